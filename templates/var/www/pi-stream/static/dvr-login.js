// pi-stream's login in front of a proxied DVR (site.yml dvr_proxy viewer_auth).
// On success the appliance sets its DVR cookie and the DVR's own page loads.
// No inline script: the page's Content-Security-Policy forbids it.
(function () {
  "use strict";

  var form = document.getElementById("login");
  var message = document.getElementById("login-message");
  var MESSAGES = {
    401: "Wrong user name or password.",
    429: "Too many attempts from this address. Wait a minute and try again.",
    503: "The appliance is busy. Try again in a few seconds.",
  };

  // Behind an identity-aware proxy (site.yml login.proxy): its signed header may be enough.
  if (form.hasAttribute("data-proxy-login")) {
    fetch("/_pi_stream/auth/proxy", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    }).then(function (response) {
      if (response.ok) window.location.replace("/");
      else if (response.status === 401) message.textContent = "Your identity may not pass here.";
    }).catch(function () {});
  }

  if (form.elements.user) form.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    message.textContent = "Checking…";
    fetch("/_pi_stream/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: form.elements.user.value, password: form.elements.password.value }),
    })
      .then(function (response) {
        form.elements.password.value = "";
        if (response.ok) {
          window.location.replace("/");
          return;
        }
        message.textContent = MESSAGES[response.status] || "Login failed (" + response.status + ").";
      })
      .catch(function () { message.textContent = "The appliance does not answer."; })
      .then(function () { button.disabled = false; });
  });
})();
