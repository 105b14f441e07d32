// Composer niceties; the form works without them. Custom width and height only matter for a
// custom size, and compression only for JPEG and WebP.
(function () {
  "use strict";

  function sync(form) {
    var size = form.querySelector("[name=size]");
    var format = form.querySelector("[name=output_format]");
    var custom = size && size.value === "custom";
    form.querySelectorAll(".field-width, .field-height").forEach(function (field) {
      field.hidden = !custom;
    });
    var compression = form.querySelector("[name=output_compression]");
    if (compression && format) {
      var png = format.value === "png";
      compression.disabled = png;
      if (png) compression.value = "";
    }
  }

  function setUp() {
    var form = document.getElementById("composer") || document.getElementById("edit-form");
    if (!form || form.dataset.ready) return;
    form.dataset.ready = "1";
    sync(form);
    form.addEventListener("change", function () { sync(form); });
  }

  document.addEventListener("DOMContentLoaded", setUp);
  document.addEventListener("htmx:afterSettle", setUp);
})();
