// pi-stream player: logs in, then attaches hls.js to each camera the viewer may
// watch, or first OvenPlayer (WebRTC) to the cameras the login offers it for.
// No inline script (the page's Content-Security-Policy forbids it), no CDN
// (the appliance may be offline).
(function () {
  "use strict";

  // Low latency without LL-HLS: play 1.5 fragments behind the live edge, catch up
  // (at most 20% faster) beyond 3 fragments. The page carries the fragment-based
  // values. Measured in bench/latency (docs/benchmarks.md): 2.1-2.3 s glass to glass
  // with 1 s fragments and no stalls; one fragment behind stalled every few seconds.
  var grid = document.getElementById("grid");
  var HLS_CONFIG = {
    liveSyncDuration: parseFloat(grid.getAttribute("data-live-sync-seconds")),
    liveMaxLatencyDuration: parseFloat(grid.getAttribute("data-live-max-latency-seconds")),
    maxLiveSyncPlaybackRate: 1.2,
    backBufferLength: 10,
    manifestLoadingMaxRetry: 1000,
    levelLoadingMaxRetry: 1000,
    fragLoadingMaxRetry: 1000,
  };
  var RETRY_MS = 3000;
  // 401 no token, 403 refused, 410 expired: retrying would only fill the
  // appliance's auth log (and get this address banned). Log in again instead.
  var AUTH_STATUSES = [401, 403, 410];
  // WebRTC (OvenPlayer, through OME's signalling at /webrtc/CAMERA/ on this origin),
  // for a camera whose entry has `webrtc`; the tile falls back to HLS for good when
  // OvenPlayer reports an error (signalling refused or closed, peer connection
  // lost), ICE fails, no picture arrives this long after connecting, or the picture
  // stops (the video's currentTime still) this long once playing. Checked once a
  // second; not while the page is hidden, where browsers may stop painting frames.
  var WEBRTC_FIRST_FRAME_MS = 8000;
  var WEBRTC_STALL_MS = 4000;
  var WEBRTC_CHECK_MS = 1000;
  var TRANSPORT_LABELS = { webrtc: "WebRTC", hls: "HLS" };
  // On a relay (site topology relay) the page lists every relay's origin, in the site's
  // order. A tile plays through a player link (the token in the path), which every relay
  // accepts: they share the site key. When the picture stops for RELAY_STALL_MS (the Pi
  // moved to another relay, or this one is gone) the tile moves to the next relay, round
  // the list until one plays. Short loader timeouts: a relay that is gone mostly does
  // not answer at all, and the default (10-20 s) would be waited out on every request.
  var RELAYS = (grid.getAttribute("data-relays") || "").split(" ").filter(Boolean);
  var RELAY_STALL_MS = 6000;
  var RELAY_SWITCH_MS = 500;
  var RELAY_HLS_CONFIG = Object.assign({}, HLS_CONFIG, {
    manifestLoadingTimeOut: 4000,
    levelLoadingTimeOut: 4000,
    fragLoadingTimeOut: 4000,
    manifestLoadingMaxRetry: 0,
    levelLoadingMaxRetry: 2,
    fragLoadingMaxRetry: 2,
  });
  var loginForm = document.getElementById("login");
  var loginMessage = document.getElementById("login-message");
  var players = [];

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  }

  function stopAll() {
    players.forEach(function (player) { player.stop(); });
    players = [];
    grid.textContent = "";
  }

  function showLogin(message) {
    stopAll();
    document.getElementById("account").hidden = true;
    loginForm.hidden = false;
    loginMessage.textContent = message || "";
    if (loginForm.elements.user) loginForm.elements.user.focus();
  }

  function showCameras(session) {
    loginForm.hidden = true;
    document.getElementById("account").hidden = false;
    document.getElementById("account-user").textContent = session.user;
    stopAll();
    grid.className = "grid grid-" + Math.max(1, Math.min(session.cameras.length, 4));
    if (!session.cameras.length) {
      grid.textContent = "No camera is shared with " + session.user + ".";
    }
    session.cameras.forEach(function (camera) { players.push(attach(camera)); });
  }

  // Behind an identity-aware proxy (site.yml login.proxy) the proxy's signed header says who this is:
  // the login service checks it and answers like a password login.
  var PROXY_MESSAGES = {
    400: "",
    401: "Your identity is not a viewer of this site.",
    429: "Too many attempts from this address. Wait a minute and try again.",
  };

  function proxyLogin(message) {
    api("POST", "/auth/proxy", {}).then(function (response) {
      if (response.ok) return response.json().then(showCameras);
      showLogin(response.status in PROXY_MESSAGES ? PROXY_MESSAGES[response.status] || message : "Sign-in failed (" + response.status + ").");
    }).catch(function () { showLogin("The appliance does not answer."); });
  }

  function checkSession(message, noProxy) {
    api("GET", "/auth/session").then(function (response) {
      if (response.ok) return response.json().then(showCameras);
      if (loginForm.hasAttribute("data-proxy-login") && !noProxy) return proxyLogin(message);
      showLogin(message);
    }).catch(function () { showLogin("The appliance does not answer."); });
  }

  function signallingUrl(path) {
    return (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + path;
  }

  function attach(camera) {
    var tile = document.getElementById("camera-tile").content.firstElementChild.cloneNode(true);
    var video = tile.querySelector("video");
    var status = tile.querySelector(".status");
    var transport = document.createElement("span");
    transport.className = "transport";
    tile.id = "camera-" + camera.name;
    tile.querySelector(".title").textContent = camera.title;
    tile.querySelector(".title").after(" ", transport);
    var replay = tile.querySelector(".replay");  // not on a relay, which keeps no recordings
    if (replay) replay.href = "/replay.html#camera=" + encodeURIComponent(camera.name);
    video.setAttribute("data-camera", camera.name);
    grid.appendChild(tile);
    var hls = null;
    var timer = null;
    var stopped = false;
    var webrtc = null;  // the OvenPlayer instance while WebRTC is tried
    var webrtcTimer = null;

    function setStatus(text, cls) {
      status.textContent = text;
      status.className = "status" + (cls ? " " + cls : "");
    }

    function setTransport(kind, why) {
      tile.setAttribute("data-transport", kind);
      transport.textContent = TRANSPORT_LABELS[kind];
      transport.title = why || "";
    }
    video.addEventListener("playing", function () { setStatus("live", "live"); });
    video.addEventListener("waiting", function () { setStatus("buffering…", ""); });

    tile.querySelector(".link").addEventListener("click", function () {
      api("POST", "/auth/link", { camera: camera.name }).then(function (response) {
        return response.ok ? response.json() : Promise.reject(response.status);
      }).then(function (link) {
        var box = tile.querySelector(".player-link");
        box.hidden = false;
        box.querySelector("input").value = link.url;
        box.querySelector("input").select();
      }).catch(function () { setStatus("could not make a link", "error"); });
    });

    function start() {
      if (stopped) return;
      hls = new window.Hls(HLS_CONFIG);
      hls.on(window.Hls.Events.ERROR, function (_event, data) {
        if (!data.fatal) return;
        hls.destroy();
        hls = null;
        var code = data.response && data.response.code;
        if (AUTH_STATUSES.indexOf(code) >= 0) {
          checkSession(code === 410 ? "Your session has expired. Please log in again." : "Please log in again.");
          return;
        }
        setStatus("no signal, retrying…", "error");
        timer = window.setTimeout(start, RETRY_MS);
      });
      hls.loadSource(camera.playlist);
      hls.attachMedia(video);
      video.play().catch(function () { /* autoplay may need a click; controls are shown */ });
    }

    function playHls(why) {
      setTransport("hls", why);
      video.hidden = false;
      if (window.Hls && window.Hls.isSupported()) {
        start();
      } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
        video.src = camera.playlist;  // Safari and iOS play HLS natively; the cookie goes along.
      } else {
        setStatus("this browser cannot play HLS", "error");
      }
    }

    function stopWebRtc() {
      var player = webrtc;
      webrtc = null;
      window.clearInterval(webrtcTimer);
      if (player) {
        try {
          player.remove();
        } catch (error) { /* whatever state it was in, its elements go below */ }
      }
      tile.querySelectorAll(".webrtc, .ovenplayer").forEach(function (element) { element.remove(); });
    }

    // Once per tile: the first failure ends WebRTC; later events of the removed player change nothing.
    function fallBack(why) {
      if (stopped || tile.getAttribute("data-transport") !== "webrtc") return;
      stopWebRtc();
      setStatus("connecting…", "");
      playHls("WebRTC " + why + ": playing HLS");
    }

    function playWebRtc() {
      // OvenPlayer makes its own <video> (and UI, hidden by player.css) in place of this box.
      var box = document.createElement("div");
      box.id = "webrtc-" + camera.name;
      box.className = "webrtc";
      video.hidden = true;
      tile.insertBefore(box, video);
      setTransport("webrtc");
      try {
        webrtc = window.OvenPlayer.create(box, {
          autoStart: true,
          mute: true,
          controls: false,
          showBigPlayButton: false,
          sources: [{ type: "webrtc", file: signallingUrl(camera.webrtc) }],
        });
      } catch (error) {
        fallBack("could not start (" + error + ")");
        return;
      }
      // Deferred: OvenPlayer calls these from inside its own event dispatch, which remove() takes apart.
      webrtc.on("error", function (error) {
        var why = "failed (" + ((error && error.message) || "error") + (error && error.code ? ", " + error.code : "") + ")";
        window.setTimeout(fallBack, 0, why);
      });
      // OvenPlayer acts on a lost connection ("disconnected") but not on ICE that never connects.
      webrtc.on("peerConnectionPrepared", function (connection) {
        connection.addEventListener("iceconnectionstatechange", function () {
          if (connection.iceConnectionState === "failed") window.setTimeout(fallBack, 0, "failed (ICE found no path to the relay)");
        });
      });
      var startedAt = Date.now();
      var progressAt = startedAt;
      var lastTime = 0;
      var playing = false;
      webrtcTimer = window.setInterval(function () {
        var media = tile.querySelector(".ovenplayer video");
        var now = Date.now();
        if (document.hidden || (playing && media && media.paused)) {
          // Not judged while nobody can see it, or while the viewer paused it.
          progressAt = now;
          if (!playing) startedAt = now;
          return;
        }
        if (media && media.currentTime > lastTime) {
          lastTime = media.currentTime;
          progressAt = now;
          if (!playing) {
            playing = true;
            media.controls = true;  // like the HLS video: fullscreen, pause
            setStatus("live", "live");
          }
        } else if (!playing && now - startedAt >= WEBRTC_FIRST_FRAME_MS) {
          fallBack("gave no picture in " + WEBRTC_FIRST_FRAME_MS / 1000 + " s");
        } else if (playing && now - progressAt >= WEBRTC_STALL_MS) {
          fallBack("stalled for " + WEBRTC_STALL_MS / 1000 + " s");
        }
      }, WEBRTC_CHECK_MS);
    }

    var relayIndex = Math.max(0, RELAYS.indexOf(window.location.origin));
    var relayPath = null;  // "/v/TOKEN/CAMERA/index.m3u8", the same on every relay
    var relayTimer = null;

    function stopRelay() {
      window.clearInterval(relayTimer);
      if (hls) hls.destroy();
      hls = null;
    }

    function nextRelay() {
      stopRelay();
      relayIndex = (relayIndex + 1) % RELAYS.length;
      setStatus("reconnecting…", "error");
      timer = window.setTimeout(playRelay, RELAY_SWITCH_MS);
    }

    function playRelay() {
      if (stopped) return;
      var origin = RELAYS[relayIndex];
      var label = origin.replace(/^https:\/\//, "");
      tile.setAttribute("data-relay", origin);
      setTransport("hls", "through the relay " + label);
      transport.textContent = "HLS via " + label;
      video.hidden = false;
      hls = new window.Hls(RELAY_HLS_CONFIG);
      hls.on(window.Hls.Events.ERROR, function (_event, data) {
        if (!data.fatal) return;
        var code = data.response && data.response.code;
        if (AUTH_STATUSES.indexOf(code) >= 0 && origin === window.location.origin) {
          stopRelay();
          checkSession(code === 410 ? "Your session has expired. Please log in again." : "Please log in again.");
          return;
        }
        nextRelay();
      });
      hls.loadSource(origin + relayPath);
      hls.attachMedia(video);
      video.play().catch(function () { /* autoplay may need a click; controls are shown */ });
      var lastTime = -1;
      var progressAt = Date.now();
      relayTimer = window.setInterval(function () {
        var now = Date.now();
        if (document.hidden || (video.paused && lastTime >= 0)) {
          progressAt = now;  // not judged while nobody can see it, or while the viewer paused it
        } else if (video.currentTime > lastTime) {
          lastTime = video.currentTime;
          progressAt = now;
        } else if (now - progressAt >= RELAY_STALL_MS) {
          nextRelay();
        }
      }, 1000);
    }

    function startRelay() {
      api("POST", "/auth/link", { camera: camera.name }).then(function (response) {
        return response.ok ? response.json() : Promise.reject(response.status);
      }).then(function (link) {
        relayPath = new URL(link.url).pathname;
        playRelay();
      }).catch(function (status) {
        if (AUTH_STATUSES.indexOf(status) >= 0) {
          checkSession("Please log in again.");
          return;
        }
        setStatus("no player link, retrying…", "error");
        timer = window.setTimeout(startRelay, RETRY_MS);
      });
    }

    if (RELAYS.length && window.Hls && window.Hls.isSupported()) {
      startRelay();
    } else if (camera.webrtc && window.OvenPlayer && window.RTCPeerConnection) {
      playWebRtc();
    } else {
      playHls(camera.webrtc ? "this browser cannot play WebRTC: playing HLS" : "");
    }
    return {
      stop: function () {
        stopped = true;
        window.clearTimeout(timer);
        window.clearInterval(relayTimer);
        stopWebRtc();
        if (hls) hls.destroy();
        video.removeAttribute("src");
      },
    };
  }

  if (loginForm.elements.user) loginForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = loginForm.querySelector("button");
    button.disabled = true;
    loginMessage.textContent = "Checking…";
    api("POST", "/auth/login", { user: loginForm.elements.user.value, password: loginForm.elements.password.value })
      .then(function (response) {
        loginForm.elements.password.value = "";
        if (response.ok) return response.json().then(showCameras);
        var messages = {
          401: "Wrong user name or password.",
          429: "Too many attempts from this address. Wait a minute and try again.",
          503: "The appliance is busy. Try again in a few seconds.",
        };
        loginMessage.textContent = messages[response.status] || "Login failed (" + response.status + ").";
      })
      .catch(function () { loginMessage.textContent = "The appliance does not answer."; })
      .then(function () { button.disabled = false; });
  });

  document.getElementById("logout").addEventListener("click", function () {
    api("POST", "/auth/logout", {}).then(function () { showLogin("Logged out."); });
  });

  checkSession("");
})();
