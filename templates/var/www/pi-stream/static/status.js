// pi-stream status page: one row per camera of the session, each camera's
// status.json fetched every 5 s while the tab is visible. Everything the
// cameras and NVRs report is set with textContent: a detail or error text is
// data, never markup. No inline script (the Content-Security-Policy forbids it).
(function () {
  "use strict";

  var REFRESH_MS = 5000;
  var SNAPSHOT_MS = 10000;  // each camera's latest.thumb.jpg at most this often
  var STALE_SECONDS = 15;  // the supervisor rewrites status.json more often than this
  var REQUEST_TIMEOUT_MS = 4000;  // below REFRESH_MS: a hung request never stalls the table for long
  var NAME_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;  // pi_stream.site.NAME_RE
  var STATES = {
    live: "live",
    starting: "starting",
    backing_off: "backing off",
    waiting: "waiting",
    idle: "idle",
    disabled: "disabled",
    stopped: "stopped",
  };
  var COLUMNS = ["camera", "snapshot", "state", "detail", "codec", "fps", "bitrate", "error", "retry", "sessions",
    "snapshots", "recording", "disk"];
  var NUMERIC = ["fps", "bitrate", "sessions"];

  var tbody = document.getElementById("cameras");
  var refreshMessage = document.getElementById("refresh-message");
  var rows = [];
  var running = false;
  var inFlight = false;
  var timer = null;
  // The Pi's clock minus this browser's, from each answer's Date header: "updated"
  // and the other times are the Pi's epoch seconds, and a phone's clock may be off.
  var clockOffsetMs = 0;

  function HttpError(status) {
    this.status = status;
    this.message = "HTTP " + status;
  }

  function noteServerClock(response) {
    var date = Date.parse(response.headers.get("Date") || "");
    if (!isNaN(date)) clockOffsetMs = date - Date.now();
  }

  function nowSeconds() {
    return (Date.now() + clockOffsetMs) / 1000;
  }

  function getJSON(path) {
    var controller = new AbortController();
    var timeout = window.setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    return fetch(path, { credentials: "same-origin", cache: "no-store", signal: controller.signal })
      .then(function (response) {
        noteServerClock(response);
        if (!response.ok) throw new HttpError(response.status);
        return response.json();
      })
      .finally(function () { window.clearTimeout(timeout); });
  }

  function describe(error) {
    var statuses = {
      401: "not logged in: log in on the main page",
      403: "not allowed",
      404: "nothing yet",
      410: "session expired: log in on the main page",
    };
    if (error instanceof HttpError) return statuses[error.status] || "the appliance answered HTTP " + error.status;
    if (error && error.name === "AbortError") return "no answer within " + REQUEST_TIMEOUT_MS / 1000 + " s";
    if (error instanceof SyntaxError) return "unreadable answer (not JSON)";
    if (error instanceof TypeError) return "the appliance does not answer";
    return "unreadable answer";
  }

  // --- small DOM and formatting helpers -----------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fill(cell) {
    cell.textContent = "";
    for (var i = 1; i < arguments.length; i++) {
      var part = arguments[i];
      if (part === null || part === undefined || part === "") continue;
      cell.appendChild(typeof part === "string" ? document.createTextNode(part) : part);
    }
  }

  function line(text, className) {
    return el("div", className || "small muted", text);
  }

  function isNumber(value) {
    return typeof value === "number" && isFinite(value);
  }

  function formatAge(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 90) return seconds + " s";
    if (seconds < 90 * 60) return Math.round(seconds / 60) + " min";
    if (seconds < 36 * 3600) return Math.round(seconds / 3600) + " h";
    return Math.round(seconds / 86400) + " d";
  }

  function formatClock(epoch) {
    var date = new Date(epoch * 1000);
    var options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (Math.abs(nowSeconds() - epoch) > 20 * 3600) {
      options.year = "numeric";
      options.month = "2-digit";
      options.day = "2-digit";
    }
    return date.toLocaleString(undefined, options);
  }

  function when(epoch) {
    var delta = epoch - nowSeconds();
    return formatClock(epoch) + (delta >= 0 ? " (in " + formatAge(delta) + ")" : " (" + formatAge(-delta) + " ago)");
  }

  function formatBitrate(kbps) {
    return kbps >= 1000 ? (kbps / 1000).toFixed(1) + " Mbit/s" : Math.round(kbps) + " kbit/s";
  }

  // --- one row per camera ------------------------------------------------

  function replayLink(camera) {
    return "/replay.html#camera=" + encodeURIComponent(camera.name);
  }

  function buildRow(camera) {
    var tr = el("tr");
    tr.setAttribute("data-camera", camera.name);
    var cells = {};
    COLUMNS.forEach(function (column) {
      var td = el("td", "col-" + column + (NUMERIC.indexOf(column) >= 0 ? " num" : ""));
      tr.appendChild(td);
      cells[column] = td;
    });
    var replay = el("a", "small", "replay");
    replay.href = replayLink(camera);
    fill(cells.camera, el("strong", "", camera.title || camera.name), line(camera.name), replay);

    var link = el("a");
    link.href = replayLink(camera);
    var img = el("img");
    img.alt = "Latest snapshot of " + (camera.title || camera.name);
    img.hidden = true;
    var none = el("span", "small muted", "no snapshot yet");
    img.addEventListener("load", function () { img.hidden = false; none.hidden = true; });
    img.addEventListener("error", function () { img.hidden = true; none.hidden = false; });
    link.appendChild(img);
    fill(cells.snapshot, link, none);
    cells.snapshot.className += " snapshot";
    fill(cells.state, el("span", "state", "…"));
    tbody.appendChild(tr);
    return { camera: camera, tr: tr, cells: cells, img: img, status: null, stopped: false, imageAt: 0, imageLatest: null };
  }

  function stateBadge(state) {
    var known = Object.prototype.hasOwnProperty.call(STATES, state);
    // The class comes from the fixed list, never from the answer.
    return el("span", "state state-" + (known ? state : "error"), known ? STATES[state] : "unknown state");
  }

  function renderState(row, status, stale) {
    var age = nowSeconds() - status.updated;
    if (stale) {
      var what = isNumber(status.updated) ? "status is " + formatAge(age) + " old: " : "status has no time: ";
      fill(row.cells.state, el("span", "state state-stale", "no supervisor"),
        line(what + "the supervisor is not running", "small bad"),
        line("last reported: " + (STATES[status.state] || "unknown")));
      return;
    }
    fill(row.cells.state, stateBadge(status.state),
      isNumber(status.since) ? line("since " + when(status.since)) : null);
  }

  function renderCodec(cell, codec) {
    if (codec === "h264") return fill(cell, "H.264");
    if (codec === "hevc") {
      return fill(cell, el("strong", "warn", "HEVC"),
        line("browsers play H.264: set the camera's stream to H.264", "small warn"));
    }
    fill(cell, codec ? String(codec) : "—");
  }

  function renderSnapshots(cell, snapshots) {
    if (!snapshots || typeof snapshots !== "object") return fill(cell, "—");
    var every = isNumber(snapshots.interval_seconds) ? line("every " + snapshots.interval_seconds + " s") : null;
    var age = isNumber(snapshots.latest_at) ? nowSeconds() - snapshots.latest_at : null;
    var late = age !== null && isNumber(snapshots.interval_seconds) && age > 3 * snapshots.interval_seconds + 5;
    var latest = age === null ? el("span", "muted", "none yet") : el("span", late ? "warn" : "", formatAge(age) + " ago");
    if (!snapshots.writing && snapshots.detail) {
      // Archiving stopped for a reason (the disk is nearly full): the latest picture may still update.
      return fill(cell, el("strong", "bad", "not archived"), line(snapshots.detail, "small bad"), latest, every);
    }
    // Not writing without a reason: this camera keeps only its latest picture (no snapshot directory).
    fill(cell, latest, every, snapshots.writing ? null : line("latest only, not archived"),
      snapshots.detail ? line(snapshots.detail) : null);
  }

  function renderRecording(cell, recording, live) {
    if (!recording || typeof recording !== "object" || !recording.enabled) return fill(cell, el("span", "muted", "off"));
    if (recording.writing) return fill(cell, "recording", recording.detail ? line(recording.detail) : null);
    // Recording follows the camera: while it is not live, not writing is expected.
    if (!live) return fill(cell, el("span", "muted", "waiting"), recording.detail ? line(recording.detail) : null);
    fill(cell, el("strong", "bad", "not writing"), recording.detail ? line(recording.detail, "small bad") : null);
  }

  function renderDisk(cell, disk) {
    if (!disk || typeof disk !== "object") return fill(cell, "—");
    var free = isNumber(disk.free_percent) ? disk.free_percent : null;
    var cls = free === null ? "" : free < 5 ? "bad" : free < 15 ? "warn" : "";
    fill(cell, el("span", cls, free === null ? "?" : free.toFixed(0) + "% free"),
      disk.writing === false ? line("not writing", "small bad") : null);
    cell.title = disk.path ? "on " + disk.path : "";
  }

  function renderStatus(row, status) {
    if (!status || typeof status !== "object") throw new SyntaxError("status is not an object");
    var c = row.cells;
    var stale = !isNumber(status.updated) || nowSeconds() - status.updated > STALE_SECONDS;
    row.tr.classList.toggle("outdated", stale);
    renderState(row, status, stale);
    fill(c.detail, status.detail ? String(status.detail) : "",
      isNumber(status.priority) ? line("priority " + status.priority) : null);
    renderCodec(c.codec, status.codec);
    fill(c.fps, isNumber(status.fps) ? status.fps.toFixed(1) : "—");
    fill(c.bitrate, isNumber(status.bitrate_kbps) ? formatBitrate(status.bitrate_kbps) : "—");
    fill(c.error, status.last_error ? el("span", "bad", status.last_error) : "—",
      status.last_error && isNumber(status.last_error_at) ? line("at " + when(status.last_error_at)) : null);
    fill(c.retry, isNumber(status.retry_at) ? when(status.retry_at) : "—",
      isNumber(status.failures) && status.failures > 0 ? line(status.failures + " failure" + (status.failures === 1 ? "" : "s") + " in a row") : null);
    fill(c.sessions, isNumber(status.sessions_opened) ? String(status.sessions_opened) : "—");
    renderSnapshots(c.snapshots, status.snapshots);
    renderRecording(c.recording, status.recording, status.state === "live" && !stale);
    renderDisk(c.disk, status.disk);
    refreshImage(row, status.snapshots);
  }

  function refreshImage(row, snapshots) {
    var latest = snapshots && isNumber(snapshots.latest_at) ? snapshots.latest_at : null;
    // Only a newer snapshot is worth a request; the query string keeps caches from answering with the old one.
    if (latest === null || latest === row.imageLatest || Date.now() - row.imageAt < SNAPSHOT_MS) return;
    row.imageAt = Date.now();
    row.imageLatest = latest;
    row.img.src = "/camera/" + encodeURIComponent(row.camera.name) + "/latest.thumb.jpg?t=" + encodeURIComponent(latest);
  }

  function renderError(row, error) {
    row.tr.classList.add("outdated");
    var text = describe(error);
    var stopped = error instanceof HttpError && error.status === 403;
    if (stopped) {
      // A refused request is logged for fail2ban: asking again every 5 s would get this address banned.
      row.stopped = true;
      text += " (no longer asked; reload the page after logging in again)";
    }
    var label = error instanceof HttpError && error.status === 404 ? "no status" : "error";
    fill(row.cells.state, el("span", "state state-" + (label === "no status" ? "idle" : "error"), label), line(text, "small bad"));
  }

  function renderNvrs() {
    var list = document.getElementById("nvrs");
    var nvrs = {};
    var names = [];
    rows.forEach(function (row) {
      var nvr = row.status && row.status.nvr;
      if (!nvr || typeof nvr !== "object" || !nvr.name) return;
      var name = String(nvr.name);
      if (!nvrs[name]) {
        nvrs[name] = { report: nvr, updated: -Infinity, cameras: [] };
        names.push(name);
      }
      nvrs[name].cameras.push(row.camera.name);
      // Cameras report their NVR's budget at slightly different times: the newest report wins.
      if (isNumber(row.status.updated) && row.status.updated > nvrs[name].updated) {
        nvrs[name].report = nvr;
        nvrs[name].updated = row.status.updated;
      }
    });
    list.textContent = "";
    names.sort().forEach(function (name) {
      var report = nvrs[name].report;
      var used = isNumber(report.sessions_in_use) ? report.sessions_in_use : "?";
      var max = isNumber(report.max_sessions) ? report.max_sessions : "?";
      var item = el("li", isNumber(used) && isNumber(max) && used >= max ? "full" : "");
      item.setAttribute("data-nvr", name);
      item.appendChild(el("strong", "", name));
      item.appendChild(document.createTextNode(": " + used + " of " + max + " sessions in use"));
      item.appendChild(el("span", "small muted", " (" + nvrs[name].cameras.join(", ") + ")"));
      list.appendChild(item);
    });
    list.hidden = !names.length;
  }

  // --- the refresh loop --------------------------------------------------

  function schedule() {
    window.clearTimeout(timer);
    timer = null;
    var active = rows.some(function (row) { return !row.stopped; });
    if (running && active && !document.hidden) timer = window.setTimeout(refresh, REFRESH_MS);
    else if (running && !active) refreshMessage.textContent = "No camera left to ask: reload the page to try again.";
  }

  function refresh() {
    timer = null;
    if (!running || inFlight || document.hidden) return;
    inFlight = true;
    var loggedOut = false;
    var requests = rows.filter(function (row) { return !row.stopped; }).map(function (row) {
      var url = "/camera/" + encodeURIComponent(row.camera.name) + "/status.json";
      return getJSON(url)
        .then(function (status) {
          row.status = status;
          renderStatus(row, status);
        })
        .catch(function (error) {
          if (error instanceof HttpError && (error.status === 401 || error.status === 410)) loggedOut = true;
          renderError(row, error);
        });
    });
    Promise.all(requests).then(function () {
      inFlight = false;
      if (loggedOut) return loginLost();
      renderNvrs();
      refreshMessage.textContent = "Updated " + formatClock(nowSeconds()) + " (Pi time). Refreshes every " +
        REFRESH_MS / 1000 + " s while this tab is visible.";
      schedule();
    });
  }

  function stop() {
    running = false;
    window.clearTimeout(timer);
    timer = null;
  }

  function showLoggedOut(why) {
    stop();
    document.getElementById("status").hidden = true;
    if (why) document.getElementById("logged-out-why").textContent = why;
    document.getElementById("logged-out").hidden = false;
  }

  // A camera answered 401 (no token for its path) or 410 (token expired). If the
  // session itself is still valid, the media cookies predate this page's paths:
  // only a new login sets them, and "log in" alone would lead to a page that
  // already shows the cameras.
  function loginLost() {
    stop();
    getJSON("/auth/session").then(function () {
      showLoggedOut("Your login does not reach these pages (it expired, or it predates them): log out on the main page and log in again.");
    }, function () { showLoggedOut(); });
  }

  function showProblem(text) {
    stop();
    var problem = document.getElementById("problem");
    problem.textContent = text;
    problem.hidden = false;
  }

  function showSession(session) {
    var cameras = session && Array.isArray(session.cameras) ? session.cameras : [];
    cameras = cameras.filter(function (camera) { return camera && NAME_RE.test(String(camera.name)); });
    document.getElementById("status").hidden = false;
    rows = cameras.map(buildRow);
    if (!rows.length) {
      refreshMessage.textContent = "No camera is shared with " + (session && session.user ? session.user : "this login") + ".";
      return;
    }
    running = true;
    refresh();
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      window.clearTimeout(timer);
      timer = null;
    } else if (running) {
      refresh();
    }
  });

  getJSON("/auth/session").then(showSession, function (error) {
    // 401: no session; 403: one that no longer passes (the viewer removed, or the password changed).
    if (error instanceof HttpError && (error.status === 401 || error.status === 403)) return showLoggedOut();
    showProblem("Could not read the session: " + describe(error) + ".");
  });
})();
