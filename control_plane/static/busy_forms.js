// Forms whose action takes a while (data-busy="what to say meanwhile"): once sent, the button is
// disabled (no second run from a second click) and the text is announced beside it.
document.addEventListener("submit", function (event) {
  "use strict";
  var form = event.target;
  var text = form.getAttribute("data-busy");
  if (!text) return;
  var button = form.querySelector("button[type=submit]");
  if (button) {
    window.setTimeout(function () { button.disabled = true; }, 0);  // after the browser took the submit
  }
  var status = form.querySelector(".busy") || document.createElement("span");
  status.className = "busy muted";
  status.setAttribute("role", "status");
  status.textContent = text;
  form.appendChild(status);
});
