// The live page's own script (served from 'self', as the CSP requires). When the figures'
// stream fails, ask the service whether the session still holds; if it has ended (401), stop
// reconnecting and say so in words: the notice is an alert, so a screen reader reads it out,
// and the figures are marked as no longer current. Any other failure is left to the SSE
// extension, which reconnects by itself.
(function () {
  "use strict";
  var ended = false;

  function sessionEnded(live) {
    ended = true;
    live.removeAttribute("sse-connect"); // the extension reconnects only while this is present
    live.classList.add("live--ended");
    var notice = document.getElementById("live-ended");
    if (notice) {
      notice.hidden = false;
    }
  }

  document.addEventListener("htmx:sseError", function (event) {
    var live = document.querySelector(".live[sse-connect]");
    if (ended || !live) {
      return;
    }
    var source = event.detail && event.detail.source;
    fetch("/api/v1/live", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401 && !ended) {
          if (source) {
            source.close();
          }
          sessionEnded(live);
        }
      })
      .catch(function () {
        // The service is unreachable: not an ended session; the extension keeps retrying.
      });
  });
})();
