// The edit page: check each chosen file before anything is uploaded, show the broken rule
// next to its field, keep the submit button disabled until the set is valid, and let the
// designer paint the mask over the source. Without JavaScript the form posts as it is and
// the server's checks (the ones that count) answer with the same messages.
(function () {
  "use strict";

  function setUp() {
    var form = document.getElementById("edit-form");
    if (!form || form.dataset.editReady) return;
    form.dataset.editReady = "1";
    var rules = JSON.parse(document.getElementById("image-rules").textContent);
    var submit = document.getElementById("submit-edit");
    var submitStatus = document.getElementById("submit-status");
    var sourceInput = form.querySelector("input[name=source]");
    var maskInput = form.querySelector("input[name=mask]");
    var referencesInput = form.querySelector("input[name=references]");
    var sizesInput = form.querySelector("input[name=input_sizes]");
    var painterBox = document.getElementById("painter");
    var stage = document.getElementById("painter-stage");
    var preview = document.getElementById("source-preview");
    var painterStatus = document.getElementById("painter-status");
    var undoButton = painterBox.querySelector("[data-action=undo]");
    var redoButton = painterBox.querySelector("[data-action=redo]");
    var brush = document.getElementById("brush-size");
    var brushShown = document.getElementById("brush-size-shown");

    var state = {
      source: null, // {width, height} of a valid source
      fromOutput: Boolean(painterBox.dataset.sourceUrl),
      problems: { source: null, mask: null, references: null },
      pending: { source: false, mask: false, references: false },
      references: [], // [{width, height}] of valid references
      maskFromFile: false,
      painted: false, // painted since the last mask file: the painting is the mask
      submitting: false,
    };

    var painter = new window.MaskPainter(stage, document.getElementById("paint-layer"), onPaint);
    var tools = painterBox.querySelector(".painter-tools");
    painterBox.hidden = false;
    stage.hidden = tools.hidden = true;

    function showProblem(name, message) {
      state.problems[name] = message;
      var slot = form.querySelector('[data-problem-for="' + name + '"]');
      if (slot) {
        slot.textContent = message || "";
        slot.hidden = !message;
      }
      var field = form.querySelector('[data-file-field="' + name + '"]');
      if (field) {
        field.classList.toggle("invalid", Boolean(message));
        // The server's message was about the file chosen before; it no longer applies.
        field.querySelectorAll(".errorlist").forEach(function (list) { list.remove(); });
      }
    }

    function ready() {
      var pending = state.pending.source || state.pending.mask || state.pending.references;
      var hasSource = state.source !== null && !state.problems.source;
      var problems = state.problems.source || state.problems.mask || state.problems.references;
      if (pending) return "Checking the files…";
      if (!hasSource) return state.problems.source ? "Fix the source image." : "Choose the image to edit.";
      if (problems) return "Fix the problems marked next to the files.";
      return "";
    }

    function refresh() {
      var reason = ready();
      submit.disabled = Boolean(reason) || state.submitting;
      submitStatus.textContent = reason;
      undoButton.disabled = !painter.canUndo();
      if (redoButton) redoButton.disabled = !painter.canRedo();
      var coverage = painter.coverage();
      var percent = Math.round(coverage * 1000) / 10;
      if (!state.source) {
        painterStatus.textContent = "Choose a source image to paint a mask over it.";
      } else if (coverage === 0) {
        painterStatus.textContent = "No mask: the whole image may change. Paint over the area " +
          "to change to keep everything else as it is.";
      } else {
        painterStatus.textContent = percent + "% of the image is marked to change" +
          (state.maskFromFile && !state.painted ? " (from the mask file)." : ".");
      }
      painterBox.dataset.coverage = String(coverage);
    }

    function publishSizes() {
      var sizes = [];
      if (state.source && !state.fromOutput) sizes.push(state.source);
      sizes = sizes.concat(state.references);
      sizesInput.value = sizes.map(function (s) { return s.width + "x" + s.height; }).join(",");
      if (window.htmx) window.htmx.trigger(form, "sizes-changed");
    }

    function sizeIsLegal(width, height) {
      var size = rules.size;
      var longest = Math.max(width, height);
      var shortest = Math.min(width, height);
      return width % size.edge_multiple === 0 && height % size.edge_multiple === 0 &&
        longest <= size.max_edge && longest <= size.max_aspect_ratio * shortest &&
        width * height >= size.min_pixels && width * height <= size.max_pixels;
    }

    function labelSourceSize(width, height) {
      var option = form.querySelector('select[name=size] option[value="source"]');
      if (!option || state.fromOutput) return;
      option.textContent = sizeIsLegal(width, height)
        ? "Same as the source (" + width + " x " + height + ")"
        : "Same shape as the source (" + width + " x " + height + "), at a size gpt-image-2 takes";
    }

    function showSource(url, width, height) {
      state.source = { width: width, height: height };
      labelSourceSize(width, height);
      painter.setSize(width, height);
      preview.src = url;
      preview.width = width;
      preview.height = height;
      stage.hidden = tools.hidden = false;
      stage.style.aspectRatio = width + " / " + height;
      var longest = Math.max(width, height);
      brush.max = String(Math.max(16, Math.round(longest / 4)));
      brush.value = String(Math.max(8, Math.round(longest / 16)));
      painter.size = Number(brush.value);
      brushShown.textContent = brush.value;
    }

    function checkSource() {
      var file = sourceInput.files[0];
      state.source = null;
      stage.hidden = tools.hidden = true;
      painter.setSize(0, 0);
      state.maskFromFile = state.painted = false;
      if (!file) {
        showProblem("source", null);
        return Promise.resolve();
      }
      state.pending.source = true;
      refresh();
      return window.ImageCheck.inspect(file, rules.input.max_bytes).then(function (info) {
        state.pending.source = false;
        var problem = window.ImageCheck.inputProblem(info, rules);
        showProblem("source", problem);
        if (!problem) showSource(URL.createObjectURL(file), info.width, info.height);
        return checkMask();
      });
    }

    function checkMask() {
      var file = maskInput.files[0];
      if (!file) {
        showProblem("mask", null);
        refresh();
        return Promise.resolve();
      }
      if (!state.source) {
        // The server checks a mask against the source; without one there is nothing to say.
        showProblem("mask", null);
        refresh();
        return Promise.resolve();
      }
      state.pending.mask = true;
      refresh();
      return window.ImageCheck.inspect(file, rules.mask.max_bytes).then(function (info) {
        state.pending.mask = false;
        var problem = window.ImageCheck.maskProblem(info, state.source, rules);
        showProblem("mask", problem);
        refresh();
        if (problem) return null;
        return createImageBitmap(file).then(function (bitmap) {
          painter.loadMask(bitmap);
          state.maskFromFile = true;
          state.painted = false;
          refresh();
        });
      });
    }

    function checkReferences() {
      var files = Array.prototype.slice.call(referencesInput.files);
      var list = document.getElementById("chosen-references");
      list.textContent = "";
      state.references = [];
      var tooMany = window.ImageCheck.countProblem(1 + files.length, rules);
      if (tooMany || !files.length) {
        showProblem("references", tooMany);
        publishSizes();
        refresh();
        return Promise.resolve();
      }
      state.pending.references = true;
      refresh();
      return Promise.all(files.map(function (file) {
        return window.ImageCheck.inspect(file, rules.input.max_bytes);
      })).then(function (infos) {
        state.pending.references = false;
        var problems = [];
        infos.forEach(function (info) {
          var problem = window.ImageCheck.inputProblem(info, rules);
          var item = document.createElement("li");
          item.textContent = info.name + (problem ? "" : " · " + info.width + "x" + info.height);
          item.className = problem ? "bad" : "ok";
          list.appendChild(item);
          if (problem) problems.push(info.name + ": " + problem);
          else state.references.push({ width: info.width, height: info.height });
        });
        showProblem("references", problems.join(" ") || null);
        publishSizes();
        refresh();
      });
    }

    function onPaint() {
      if (maskInput.files.length && !state.painted) {
        // From here on the painting is the mask; the chosen file is replaced on submit.
        maskInput.value = "";
        showProblem("mask", null);
      }
      state.painted = true;
      refresh();
    }

    if (sourceInput) {
      sourceInput.addEventListener("change", function () {
        checkSource().then(function () { publishSizes(); refresh(); });
      });
    }
    if (state.fromOutput) {
      showSource(painterBox.dataset.sourceUrl, Number(painterBox.dataset.sourceWidth),
        Number(painterBox.dataset.sourceHeight));
    }
    if (state.fromOutput && painterBox.dataset.regionUrl) {
      // A reviewer's suggested edit: their region is the starting painting, to refine.
      fetch(painterBox.dataset.regionUrl, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.blob() : null; })
        .then(function (blob) { return blob ? createImageBitmap(blob) : null; })
        .then(function (bitmap) {
          if (!bitmap) return;
          painter.loadMask(bitmap);
          state.painted = true;
          refresh();
        });
    }
    maskInput.addEventListener("change", checkMask);
    referencesInput.addEventListener("change", checkReferences);

    painterBox.querySelectorAll("[data-tool]").forEach(function (button) {
      button.addEventListener("click", function () {
        painter.tool = button.dataset.tool;
        painterBox.querySelectorAll("[data-tool]").forEach(function (other) {
          other.setAttribute("aria-pressed", String(other === button));
        });
      });
    });
    painterBox.querySelector("[data-action=undo]").addEventListener("click", function () {
      painter.undo();
    });
    if (redoButton) redoButton.addEventListener("click", function () { painter.redo(); });
    painterBox.querySelector("[data-action=clear]").addEventListener("click", function () {
      painter.clear();
    });
    painterBox.querySelector("[data-action=invert]").addEventListener("click", function () {
      painter.invert();
    });
    brush.addEventListener("input", function (event) {
      event.stopPropagation(); // not a form change: no preview request
      painter.size = Number(brush.value);
      brushShown.textContent = brush.value;
    });
    brush.addEventListener("change", function (event) { event.stopPropagation(); });

    // The painter's keys: Ctrl/Cmd+Z undo, Ctrl/Cmd+Shift+Z (or Ctrl+Y) redo, [ and ] the
    // brush size. Keys typed into a text field stay that field's own.
    function typing(target) {
      var tag = target && target.tagName ? target.tagName.toLowerCase() : "";
      if (tag === "textarea" || tag === "select") return true;
      return tag === "input" && !/^(range|radio|checkbox|button|submit|file)$/.test(target.type);
    }
    function resizeBrush(direction) {
      var step = Math.max(2, Math.round(Number(brush.value) * 0.15));
      var size = Number(brush.value) + direction * step;
      brush.value = String(Math.min(Number(brush.max), Math.max(Number(brush.min), size)));
      painter.size = Number(brush.value);
      brushShown.textContent = brush.value;
    }
    document.addEventListener("keydown", function (event) {
      if (painterBox.hidden || typing(event.target)) return;
      var key = event.key.toLowerCase();
      var command = event.ctrlKey || event.metaKey;
      if (command && key === "z") {
        if (event.shiftKey) painter.redo(); else painter.undo();
      } else if (command && key === "y") {
        painter.redo();
      } else if (!command && !event.altKey && (event.key === "[" || event.key === "]")) {
        resizeBrush(event.key === "]" ? 1 : -1);
      } else {
        return;
      }
      event.preventDefault();
    });

    form.addEventListener("submit", function (event) {
      if (ready() || state.submitting) {
        event.preventDefault();
        refresh();
        return;
      }
      if (!state.painted) return; // the chosen mask file (or none) goes as it is
      event.preventDefault();
      state.submitting = true;
      refresh();
      var done = painter.coverage() === 0
        ? Promise.resolve(null)
        : painter.toMaskBlob();
      done.then(function (file) {
        var files = new DataTransfer();
        if (file) files.items.add(file);
        // A cleared painting means no mask, not the reviewer's region.
        var region = form.querySelector("input[name=region_decision]");
        if (!file && region) region.value = "";
        maskInput.files = files.files;
        HTMLFormElement.prototype.submit.call(form);
      });
    });

    refresh();
  }

  document.addEventListener("DOMContentLoaded", setUp);
})();
