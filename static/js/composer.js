// Composer niceties; the form works without them. Custom width and height only matter for a
// custom size, and compression only for JPEG and WebP. A transparent background with a
// format that has no alpha is flagged by the rule studio/imagerules.py hands the page (the
// server checks it again).
(function () {
  "use strict";

  function rules() {
    var script = document.getElementById("image-rules");
    return script ? JSON.parse(script.textContent) : null;
  }

  // The message for background + format, or null: imagerules.background_problems' rule.
  function backgroundProblem(background, format, given) {
    if (!given || background !== "transparent") return null;
    if (given.transparent_formats.indexOf(format) >= 0) return null;
    return given.setting_messages.transparent_format.replace("{format}", format.toUpperCase());
  }

  function showBackgroundProblem(form, format) {
    var background = form.querySelector("[name=background]");
    if (!background || !format) return;
    var field = background.closest(".field") || background.parentNode;
    var note = field.querySelector(".client-error[data-rule=background]");
    var problem = backgroundProblem(background.value, format.value, rules());
    if (!problem) {
      if (note) note.remove();
      background.removeAttribute("aria-invalid");
      return;
    }
    if (!note) {
      note = document.createElement("p");
      note.className = "client-error";
      note.dataset.rule = "background";
      note.setAttribute("role", "alert");
      field.appendChild(note);
    }
    note.textContent = problem;
    background.setAttribute("aria-invalid", "true");
  }

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
    showBackgroundProblem(form, format);
  }

  function setUp() {
    var form = document.getElementById("composer") || document.getElementById("edit-form");
    if (!form || form.dataset.ready) return;
    form.dataset.ready = "1";
    sync(form);
    form.addEventListener("change", function () { sync(form); });
  }

  window.ComposerRules = { backgroundProblem: backgroundProblem };
  document.addEventListener("DOMContentLoaded", setUp);
  document.addEventListener("htmx:afterSettle", setUp);
})();
