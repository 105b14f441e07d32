// Before / after comparison on the request page: side by side works without JavaScript;
// this adds the slider view, which lays the two images on top of each other.
(function () {
  "use strict";

  function setUp(root) {
    root.querySelectorAll("[data-compare]").forEach(function (compare) {
      if (compare.dataset.ready) return;
      compare.dataset.ready = "1";
      var modes = compare.querySelector(".compare-modes");
      var side = compare.querySelector(".compare-side");
      var slider = compare.querySelector(".compare-slider");
      var range = slider.querySelector("input[type=range]");
      var after = slider.querySelector(".compare-after");
      var line = slider.querySelector(".compare-line");
      modes.hidden = false;
      function place() {
        after.style.clipPath = "inset(0 0 0 " + range.value + "%)";
        line.style.left = range.value + "%";
      }
      modes.querySelectorAll("button").forEach(function (button) {
        button.addEventListener("click", function () {
          var sliding = button.dataset.mode === "slider";
          side.hidden = sliding;
          slider.hidden = !sliding;
          modes.querySelectorAll("button").forEach(function (other) {
            other.setAttribute("aria-pressed", String(other === button));
          });
        });
      });
      range.addEventListener("input", place);
      place();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { setUp(document); });
  document.addEventListener("htmx:afterSettle", function (event) { setUp(event.target); });
})();
