// Review page: zoom and pan the full-resolution image, and draw the region a change request
// is about. The drawn region becomes a PNG mask at the image's own size: transparent where
// the reviewer painted (the part to change), opaque elsewhere, ready for a targeted edit.
(function () {
  "use strict";

  function setUpViewer(viewer) {
    var stage = viewer.querySelector(".viewer-stage");
    var canvas = viewer.querySelector(".region-canvas");
    var scale = 1, x = 0, y = 0, drawing = false, painting = false, dragging = null;
    var page = viewer.closest(".review-page");
    var regionInput = document.querySelector("input[name=region]");
    var ctx = canvas.getContext("2d");

    function fit() {
      var width = Number(viewer.dataset.width), height = Number(viewer.dataset.height);
      var room = Math.round(window.innerHeight * 0.75);
      scale = Math.min(1, viewer.clientWidth / width, room / height);
      viewer.style.height = Math.round(height * scale) + "px";
      x = (viewer.clientWidth - width * scale) / 2; y = 0; apply();
    }
    function apply() {
      stage.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")";
    }
    function zoom(factor, cx, cy) {
      var next = Math.min(8, Math.max(0.05, scale * factor));
      cx = cx === undefined ? viewer.clientWidth / 2 : cx;
      cy = cy === undefined ? viewer.clientHeight / 2 : cy;
      x = cx - (cx - x) * (next / scale);
      y = cy - (cy - y) * (next / scale);
      scale = next; apply();
    }
    function imagePoint(event) {
      var rect = canvas.getBoundingClientRect();
      return {
        x: (event.clientX - rect.left) * canvas.width / rect.width,
        y: (event.clientY - rect.top) * canvas.height / rect.height
      };
    }
    function paint(event) {
      var p = imagePoint(event);
      var radius = Math.max(8, canvas.width / 40);
      ctx.fillStyle = "rgba(220, 40, 40, 0.45)";
      ctx.beginPath(); ctx.arc(p.x, p.y, radius, 0, Math.PI * 2); ctx.fill();
    }
    function exportMask() {
      var painted = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      var mask = document.createElement("canvas");
      mask.width = canvas.width; mask.height = canvas.height;
      var mctx = mask.getContext("2d");
      var out = mctx.createImageData(canvas.width, canvas.height);
      var any = false;
      for (var i = 0; i < painted.length; i += 4) {
        var marked = painted[i + 3] > 0;
        any = any || marked;
        out.data[i] = 0; out.data[i + 1] = 0; out.data[i + 2] = 0;
        out.data[i + 3] = marked ? 0 : 255;
      }
      mctx.putImageData(out, 0, 0);
      if (regionInput) regionInput.value = any ? mask.toDataURL("image/png") : "";
    }

    viewer.addEventListener("wheel", function (event) {
      event.preventDefault();
      var rect = viewer.getBoundingClientRect();
      zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    viewer.addEventListener("pointerdown", function (event) {
      if (drawing) { painting = true; paint(event); return; }
      dragging = { x: event.clientX - x, y: event.clientY - y };
      viewer.setPointerCapture(event.pointerId);
    });
    viewer.addEventListener("pointermove", function (event) {
      if (painting) { paint(event); return; }
      if (dragging) { x = event.clientX - dragging.x; y = event.clientY - dragging.y; apply(); }
    });
    window.addEventListener("pointerup", function () {
      if (painting) { painting = false; exportMask(); }
      dragging = null;
    });
    page.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var kind = button.dataset.zoom;
        if (kind === "in") zoom(1.25);
        else if (kind === "out") zoom(0.8);
        else fit();
      });
    });
    page.querySelector("[data-draw=toggle]").addEventListener("click", function (event) {
      drawing = !drawing;
      canvas.hidden = false;
      event.currentTarget.setAttribute("aria-pressed", String(drawing));
      viewer.classList.toggle("drawing", drawing);
    });
    page.querySelector("[data-draw=clear]").addEventListener("click", function () {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      if (regionInput) regionInput.value = "";
    });
    fit();
    window.addEventListener("resize", fit);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var viewer = document.getElementById("viewer");
    if (viewer) setUpViewer(viewer);
  });
})();

// Keyboard shortcuts on the review page (the `?` dialog lists them). Keys typed into a text
// field stay there; Escape leaves the field.
(function () {
  var chosenRow = null;

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    if (tag === "textarea" || tag === "select") return true;
    return tag === "input" && !/^(radio|checkbox|button|submit)$/.test(target.type);
  }

  function click(selector) {
    var element = document.querySelector(selector);
    if (element) element.click();
    return Boolean(element);
  }

  function needsText(field) {
    // A reason (or an override reason) is asked for first: focus it instead of sending.
    if (field && !field.value.trim()) {
      field.focus();
      return true;
    }
    return false;
  }

  function chooseRow(number) {
    var row = document.querySelector('[data-label-row="' + number + '"]');
    if (!row) return;
    if (chosenRow) chosenRow.classList.remove("chosen");
    chosenRow = row;
    row.classList.add("chosen");
    row.scrollIntoView({ block: "nearest" });
  }

  function setVerdict(value) {
    if (!chosenRow || !document.body.contains(chosenRow)) {
      chooseRow(1);
    }
    if (!chosenRow) return;
    var radio = chosenRow.querySelector('input[type=radio][value="' + value + '"]');
    if (radio) {
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }

  function toggleHelp() {
    var dialog = document.getElementById("shortcut-help");
    if (!dialog) return;
    if (dialog.open) dialog.close();
    else dialog.showModal();
  }

  document.addEventListener("keydown", function (event) {
    if (!document.querySelector(".review-page")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var reason = document.querySelector(".decision-form textarea[name=reason]");
    var override = document.querySelector(".decision-form textarea[name=override_reason]");
    var handled = true;
    switch (event.key) {
      case "?": toggleHelp(); break;
      case "a": if (!needsText(override)) click("[data-shortcut=approve]"); break;
      case "c": if (!needsText(reason)) click("[data-shortcut=request_changes]"); break;
      case "r": if (!needsText(reason)) click("[data-shortcut=reject]"); break;
      case "j": handled = click("[data-shortcut=next]"); break;
      case "k": handled = click("[data-shortcut=previous]"); break;
      case "e": setVerdict("exact"); break;
      case "w": setVerdict("wrong"); break;
      case "m": setVerdict("missing"); break;
      case "s": click("[data-shortcut=inspect]"); break;
      default:
        if (/^[1-9]$/.test(event.key)) chooseRow(event.key);
        else handled = false;
    }
    if (handled) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.querySelector("[data-shortcut-help]");
    if (button) button.addEventListener("click", toggleHelp);
  });
})();
