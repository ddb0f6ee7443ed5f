// pi-stream player: attaches hls.js to every <video data-src>. No inline script
// (the page's Content-Security-Policy forbids it), no CDN (the appliance may be offline).
(function () {
  "use strict";

  // Low latency without LL-HLS: play 1.5 fragments behind the live edge, catch up
  // (at most 20% faster) beyond 3 fragments. The page carries the fragment-based
  // values. Measured in bench/latency (docs/benchmarks.md): 2.1-2.3 s glass to glass
  // with 1 s fragments and no stalls; one fragment behind stalled every few seconds.
  var grid = document.querySelector("[data-live-sync-seconds]");
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

  function setStatus(name, text, cls) {
    var el = document.querySelector('[data-status-for="' + name + '"]');
    if (!el) return;
    el.textContent = text;
    el.className = "status" + (cls ? " " + cls : "");
  }

  function attach(video) {
    var name = video.getAttribute("data-camera");
    var src = video.getAttribute("data-src");
    video.addEventListener("playing", function () { setStatus(name, "live", "live"); });
    video.addEventListener("waiting", function () { setStatus(name, "buffering…", ""); });

    if (window.Hls && window.Hls.isSupported()) {
      var start = function () {
        var hls = new window.Hls(HLS_CONFIG);
        hls.on(window.Hls.Events.ERROR, function (_event, data) {
          if (!data.fatal) return;
          setStatus(name, "no signal, retrying…", "error");
          hls.destroy();
          window.setTimeout(start, RETRY_MS);
        });
        hls.loadSource(src);
        hls.attachMedia(video);
        video.play().catch(function () { /* autoplay may need a click; controls are shown */ });
      };
      start();
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      // Safari and iOS play HLS natively.
      video.src = src;
    } else {
      setStatus(name, "this browser cannot play HLS", "error");
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("video[data-src]"), attach);
})();
