// pi-stream replay page: pick a camera and a day, scrub through that day's
// snapshots, play the day's recordings. Lazy on purpose: a day at one frame
// every 4 s is ~21,600 frames, so the page only ever loads the frame it shows
// (its thumbnail while dragging, the full picture once released) and the few
// thumbnails of the strip around it. Names from the listings are checked
// against fixed patterns before they reach a URL, and everything is built with
// createElement/textContent. No inline script (the Content-Security-Policy forbids it).
(function () {
  "use strict";

  var NAME_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;  // pi_stream.site.NAME_RE
  var DAY_RE = /^\d{4}-\d{2}-\d{2}$/;
  var FRAME_RE = /^\d{6}(\.thumb)?\.jpg$/;
  var RECORDING_RE = /^\d{6}\.mp4$/;
  var FULL_DELAY_MS = 150;  // arrow key held down: only the frame it stops on loads full size
  var PLAY_STEP_MS = 400;  // playing: at most 2.5 frames a second, each only after the previous one is shown
  var STRIP_SIZE = 9;  // thumbnails around the current frame
  var WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

  var cameraSelect = document.getElementById("camera");
  var daySelect = document.getElementById("day");
  var dayMessage = document.getElementById("day-message");
  var scrubber = document.getElementById("scrubber");
  var frame = document.getElementById("frame");
  var frameTime = document.getElementById("frame-time");
  var frameCount = document.getElementById("frame-count");
  var frameMessage = document.getElementById("frame-message");
  var position = document.getElementById("position");
  var playButton = document.getElementById("play");
  var strip = document.getElementById("strip");
  var recordingsSection = document.getElementById("recordings-section");
  var recordingsList = document.getElementById("recordings");
  var recordingsMessage = document.getElementById("recordings-message");
  var video = document.getElementById("recording");

  var cameras = [];
  var camera = null;  // name of the chosen camera
  var day = null;  // YYYY-MM-DD
  var frames = [];  // [{stamp: "101502", thumb: true}], oldest first
  var index = 0;  // the frame on screen (or being dragged to)
  var fullIndex = -1;  // the frame whose full picture was asked for
  var shownIsThumb = false;
  var generation = 0;  // bumped on every camera or day change: late answers for an old choice are dropped
  var fullTimer = null;
  var playTimer = null;
  var playing = false;

  function HttpError(status) {
    this.status = status;
    this.message = "HTTP " + status;
  }

  function getJSON(path) {
    return fetch(path, { credentials: "same-origin", cache: "no-cache" }).then(function (response) {
      if (!response.ok) throw new HttpError(response.status);
      return response.json();
    });
  }

  // nginx autoindex JSON: keep the entries of one type whose name fits the pattern, sorted by name.
  function listing(path, type, pattern) {
    return getJSON(path).then(function (entries) {
      if (!Array.isArray(entries)) throw new SyntaxError("not a directory listing");
      return entries.filter(function (entry) {
        return entry && entry.type === type && typeof entry.name === "string" && pattern.test(entry.name);
      }).sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
    });
  }

  function describe(error) {
    var statuses = { 401: "log in on the main page", 403: "not allowed", 404: "nothing yet", 410: "login expired" };
    if (error instanceof HttpError) return statuses[error.status] || "the appliance answered HTTP " + error.status;
    if (error instanceof SyntaxError) return "unreadable answer";
    if (error instanceof TypeError) return "the appliance does not answer";
    return "unreadable answer";
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function cameraBase() {
    return "/camera/" + encodeURIComponent(camera) + "/";
  }

  function frameUrl(i, thumb) {
    return cameraBase() + "snapshots/" + encodeURIComponent(day) + "/" + frames[i].stamp + (thumb ? ".thumb.jpg" : ".jpg");
  }

  function clock(stamp) {
    return stamp.slice(0, 2) + ":" + stamp.slice(2, 4) + ":" + stamp.slice(4, 6);
  }

  function dayLabel(name) {
    var parts = name.split("-");
    var weekday = new Date(Date.UTC(+parts[0], +parts[1] - 1, +parts[2])).getUTCDay();
    return name + " (" + WEEKDAYS[weekday] + ")";
  }

  function formatSize(bytes) {
    if (typeof bytes !== "number" || !isFinite(bytes)) return "";
    return bytes >= 1e6 ? (bytes / 1e6).toFixed(1) + " MB" : Math.round(bytes / 1e3) + " kB";
  }

  // --- the URL fragment: #camera=NAME&day=YYYY-MM-DD -------------------------

  function hashParams() {
    return new URLSearchParams(window.location.hash.slice(1));
  }

  function writeHash() {
    var params = new URLSearchParams();
    if (camera) params.set("camera", camera);
    if (day) params.set("day", day);
    window.history.replaceState(null, "", "#" + params.toString());
  }

  // --- page states -----------------------------------------------------------

  function showLoggedOut(why) {
    reset();
    generation++;
    document.getElementById("replay").hidden = true;
    if (why) document.getElementById("logged-out-why").textContent = why;
    document.getElementById("logged-out").hidden = false;
  }

  // A listing answered 401 (no token for the camera's path) or 410 (token expired).
  // If the session itself is still valid, the media cookies predate this page's
  // paths: only a new login sets them, so say "log out and in", not just "log in".
  function loginLost() {
    showLoggedOut();
    getJSON("/auth/session").then(function () {
      document.getElementById("logged-out-why").textContent =
        "Your login does not reach these pages (it expired, or it predates them): log out on the main page and log in again.";
    }, function () { /* not logged in: the message stands */ });
  }

  function showProblem(text) {
    var problem = document.getElementById("problem");
    problem.textContent = text;
    problem.hidden = false;
  }

  // An error from a listing: 401 and 410 end the page; the others are said where they happened.
  function failed(error, what, target) {
    if (error instanceof HttpError && (error.status === 401 || error.status === 410)) return loginLost();
    target.textContent = what + ": " + describe(error) + ".";
    target.classList.toggle("error", !(error instanceof HttpError && error.status === 404));
  }

  function reset() {
    stopPlay();
    stopVideo();
    window.clearTimeout(fullTimer);
    frames = [];
    fullIndex = -1;
    scrubber.hidden = true;
    recordingsSection.hidden = true;
    recordingsList.textContent = "";
    recordingsMessage.textContent = "";
    recordingsMessage.classList.remove("error");
    frame.removeAttribute("src");
    dayMessage.classList.remove("error");
  }

  // --- camera and day --------------------------------------------------------

  function showSession(session) {
    cameras = (session && Array.isArray(session.cameras) ? session.cameras : []).filter(function (entry) {
      return entry && NAME_RE.test(String(entry.name));
    });
    document.getElementById("replay").hidden = false;
    if (!cameras.length) {
      dayMessage.textContent = "No camera is shared with " + (session && session.user ? session.user : "this login") + ".";
      return;
    }
    cameras.forEach(function (entry) {
      var option = el("option", "", entry.title || entry.name);
      option.value = entry.name;
      cameraSelect.appendChild(option);
    });
    followHash();
  }

  function followHash() {
    var params = hashParams();
    var wanted = params.get("camera");
    var known = cameras.some(function (entry) { return entry.name === wanted; });
    var name = known ? wanted : cameras[0].name;
    var wantedDay = params.get("day");
    if (name !== camera) {
      cameraSelect.value = name;
      selectCamera(name, wantedDay);
    } else if (wantedDay && wantedDay !== day && hasOption(daySelect, wantedDay)) {
      daySelect.value = wantedDay;
      selectDay(wantedDay);
    }
  }

  function hasOption(select, value) {
    return Array.prototype.some.call(select.options, function (option) { return option.value === value; });
  }

  function selectCamera(name, wantedDay) {
    reset();
    var gen = ++generation;
    camera = name;
    day = null;
    daySelect.textContent = "";
    daySelect.disabled = true;
    dayMessage.textContent = "Loading the days…";
    writeHash();
    listing(cameraBase() + "snapshots/", "directory", DAY_RE).then(function (days) {
      if (gen !== generation) return;
      if (!days.length) {
        dayMessage.textContent = "No snapshots yet for this camera.";
        return;
      }
      days.reverse().forEach(function (entry) {  // newest first
        var option = el("option", "", dayLabel(entry.name));
        option.value = entry.name;
        daySelect.appendChild(option);
      });
      daySelect.disabled = false;
      var names = days.map(function (entry) { return entry.name; });
      var chosen = wantedDay && names.indexOf(wantedDay) >= 0 ? wantedDay : names[0];
      daySelect.value = chosen;
      selectDay(chosen);
    }, function (error) {
      if (gen === generation) failed(error, "Snapshots", dayMessage);
    });
  }

  function selectDay(name) {
    reset();
    var gen = ++generation;
    day = name;
    writeHash();
    dayMessage.textContent = "Loading " + name + "…";
    listing(cameraBase() + "snapshots/" + encodeURIComponent(name) + "/", "file", FRAME_RE).then(function (entries) {
      if (gen !== generation) return;
      var thumbs = {};
      entries.forEach(function (entry) {
        if (entry.name.indexOf(".thumb.") > 0) thumbs[entry.name.slice(0, 6)] = true;
      });
      frames = entries.filter(function (entry) { return entry.name.indexOf(".thumb.") < 0; }).map(function (entry) {
        var stamp = entry.name.slice(0, 6);
        return { stamp: stamp, thumb: thumbs[stamp] === true };
      });
      if (!frames.length) {
        dayMessage.textContent = "No snapshots on " + name + ".";
        return;
      }
      dayMessage.textContent = frames.length + " snapshots, " + clock(frames[0].stamp) + " to " +
        clock(frames[frames.length - 1].stamp) + " (the Pi's local time).";
      position.max = String(frames.length - 1);
      buildStrip();
      scrubber.hidden = false;
      settle(frames.length - 1, 0);  // the newest frame of the day
    }, function (error) {
      if (gen === generation) failed(error, "Snapshots of " + name, dayMessage);
    });
    loadRecordings(gen, name);
  }

  // --- the scrubber ------------------------------------------------------------

  // One thumbnail request at a time while dragging: a fast drag asks only for where it is now.
  var thumbLoader = { image: new Image(), busy: false, wanted: null };
  thumbLoader.image.addEventListener("load", function () {
    var url = thumbLoader.image.src;
    if (fullIndex !== index && frames[index] && frames[index].thumb && url.endsWith(frameUrl(index, true))) {
      shownIsThumb = true;
      frame.src = url;  // from the image cache: just loaded
    }
    nextThumb();
  });
  thumbLoader.image.addEventListener("error", nextThumb);

  function wantThumb(url) {
    thumbLoader.wanted = url;
    if (!thumbLoader.busy) nextThumb();
  }

  function nextThumb() {
    thumbLoader.busy = thumbLoader.wanted !== null;
    if (!thumbLoader.busy) return;
    thumbLoader.image.src = thumbLoader.wanted;
    thumbLoader.wanted = null;
  }

  function showPosition(i) {
    index = i;
    position.value = String(i);
    frameTime.textContent = clock(frames[i].stamp);
    frameCount.textContent = "frame " + (i + 1) + " of " + frames.length;
  }

  // Dragging: the time and the thumbnail follow the thumb of the slider.
  function preview(i) {
    showPosition(i);
    if (frames[i].thumb) wantThumb(frameUrl(i, true));
  }

  // Released (or a step): the full picture, once the position has stayed put for a moment.
  function settle(i, delay) {
    preview(i);
    window.clearTimeout(fullTimer);
    fullTimer = window.setTimeout(loadFull, delay);
  }

  function loadFull() {
    if (!frames.length) return;
    fullIndex = index;
    shownIsThumb = false;
    frameMessage.textContent = "";
    frame.src = frameUrl(index, false);
    frame.alt = "Snapshot at " + clock(frames[index].stamp);
    updateStrip();
  }

  frame.addEventListener("load", function () {
    frame.classList.toggle("thumb", shownIsThumb);
  });
  frame.addEventListener("error", function () {
    if (frame.getAttribute("src")) frameMessage.textContent = "could not load this frame";
  });

  function step(delta) {
    if (!frames.length) return;
    stopPlay();
    settle(Math.max(0, Math.min(frames.length - 1, index + delta)), FULL_DELAY_MS);
  }

  function buildStrip() {
    strip.textContent = "";
    for (var n = 0; n < Math.min(STRIP_SIZE, frames.length); n++) {
      var button = el("button");
      button.type = "button";
      button.appendChild(el("img"));
      button.appendChild(el("span"));
      button.addEventListener("click", onStripClick);
      strip.appendChild(button);
    }
  }

  function onStripClick(event) {
    var i = parseInt(event.currentTarget.getAttribute("data-index"), 10);
    if (isNaN(i) || !frames[i]) return;
    stopPlay();
    settle(i, 0);
  }

  function updateStrip() {
    var count = strip.children.length;
    var start = Math.max(0, Math.min(frames.length - count, index - Math.floor(count / 2)));
    for (var n = 0; n < count; n++) {
      var i = start + n;
      var button = strip.children[n];
      var img = button.querySelector("img");
      button.setAttribute("data-index", String(i));
      button.classList.toggle("current", i === index);
      button.querySelector("span").textContent = clock(frames[i].stamp);
      img.alt = clock(frames[i].stamp);
      if (frames[i].thumb) {
        var url = frameUrl(i, true);
        if (img.getAttribute("src") !== url) img.src = url;
        img.hidden = false;
      } else {
        img.removeAttribute("src");
        img.hidden = true;
      }
    }
  }

  // --- playing: one frame after the other, never faster than they load, until the last -----------

  function play() {
    if (!frames.length) return;
    playing = true;
    playButton.textContent = "Pause";
    window.clearTimeout(fullTimer);
    if (index >= frames.length - 1) {
      showPosition(0);
      showFrameThen(playStep);
    } else {
      playStep();
    }
  }

  function playStep() {
    playTimer = null;
    if (!playing) return;
    if (index >= frames.length - 1) return stopPlay();
    showPosition(index + 1);
    showFrameThen(playStep);
  }

  function showFrameThen(next) {
    var started = Date.now();
    var gen = generation;
    loadFull();
    var wait = function () {
      if (!playing || gen !== generation) return;
      playTimer = window.setTimeout(next, Math.max(0, PLAY_STEP_MS - (Date.now() - started)));
    };
    // decode() settles once the picture is ready or has failed: a slow Pi slows the playback, it never queues.
    frame.decode().then(wait, wait);
  }

  function stopPlay() {
    playing = false;
    window.clearTimeout(playTimer);
    playTimer = null;
    playButton.textContent = "Play";
  }

  // --- recordings --------------------------------------------------------------

  function loadRecordings(gen, name) {
    listing(cameraBase() + "recordings/" + encodeURIComponent(name) + "/", "file", RECORDING_RE).then(function (entries) {
      if (gen !== generation || !entries.length) return;
      entries.forEach(function (entry) {
        var button = el("button", "", clock(entry.name.slice(0, 6)));
        button.type = "button";
        var size = formatSize(entry.size);
        if (size) button.appendChild(el("span", "small muted", " " + size));
        button.setAttribute("data-name", entry.name);
        button.addEventListener("click", function () { playRecording(entry.name, button); });
        var item = el("li");
        item.appendChild(button);
        recordingsList.appendChild(item);
      });
      recordingsMessage.textContent = entries.length + " recording" + (entries.length === 1 ? "" : "s") +
        " on " + name + " (start times, the Pi's local time).";
      recordingsSection.hidden = false;
    }, function (error) {
      if (gen !== generation) return;
      // Recording is optional: 404 means this camera does not record (or not that day).
      if (error instanceof HttpError && error.status === 404) return;
      recordingsSection.hidden = false;
      failed(error, "Recordings", recordingsMessage);
    });
  }

  function playRecording(name, button) {
    stopPlay();
    Array.prototype.forEach.call(recordingsList.querySelectorAll("button"), function (other) {
      other.classList.toggle("current", other === button);
    });
    recordingsMessage.classList.remove("error");
    recordingsMessage.textContent = "Recording from " + clock(name.slice(0, 6)) + ".";
    video.hidden = false;
    video.src = cameraBase() + "recordings/" + encodeURIComponent(day) + "/" + name;
    video.play().catch(function () { /* autoplay refused: the controls are there */ });
  }

  function stopVideo() {
    if (!video.getAttribute("src")) return;
    video.pause();
    video.removeAttribute("src");
    video.load();
    video.hidden = true;
  }

  video.addEventListener("error", function () {
    if (!video.getAttribute("src")) return;
    recordingsMessage.classList.add("error");
    recordingsMessage.textContent = "This recording does not play here (missing, or a codec this browser cannot decode).";
  });

  // --- events ------------------------------------------------------------------

  cameraSelect.addEventListener("change", function () { selectCamera(cameraSelect.value, null); });
  daySelect.addEventListener("change", function () {
    if (DAY_RE.test(daySelect.value)) selectDay(daySelect.value);
  });
  position.addEventListener("input", function () {
    stopPlay();
    preview(parseInt(position.value, 10));
  });
  position.addEventListener("change", function () {
    settle(parseInt(position.value, 10), FULL_DELAY_MS);
  });
  document.getElementById("previous").addEventListener("click", function () { step(-1); });
  document.getElementById("next").addEventListener("click", function () { step(1); });
  playButton.addEventListener("click", function () {
    if (playing) stopPlay();
    else play();
  });
  document.addEventListener("keydown", function (event) {
    var tag = event.target && event.target.tagName;
    // The slider, the pickers and the video have their own arrow keys.
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || tag === "VIDEO") return;
    if (event.altKey || event.ctrlKey || event.metaKey || scrubber.hidden) return;
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      step(event.key === "ArrowLeft" ? -1 : 1);
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) stopPlay();
  });
  window.addEventListener("hashchange", function () {
    if (cameras.length) followHash();
  });

  getJSON("/auth/session").then(showSession, function (error) {
    // 401: no session; 403: one that no longer passes (the viewer removed, or the password changed).
    if (error instanceof HttpError && (error.status === 401 || error.status === 403)) return showLoggedOut();
    showProblem("Could not read the session: " + describe(error) + ".");
  });
})();
