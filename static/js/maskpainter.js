// The mask painter: paint over the source image to mark the area to change.
//
// The paint layer is a canvas at the source's own pixel size (CSS scales it to the page),
// so the mask it produces has exactly the source's dimensions. Painting is kept as a list
// of operations (strokes, erasures, clear, invert, a loaded mask) and redrawn from it, which
// makes undo exact and cheap in memory. toMaskBlob() turns the layer into the mask the Image
// API wants: a PNG, fully transparent where painted and opaque everywhere else.
(function () {
  "use strict";

  var PAINT = "rgb(255, 0, 110)";

  function MaskPainter(stage, canvas, onChange) {
    this.stage = stage;
    this.canvas = canvas;
    this.context = canvas.getContext("2d", { willReadFrequently: true });
    this.onChange = onChange || function () {};
    this.operations = [];
    this.undone = []; // operations taken back by undo, newest last, for redo
    this.tool = "paint";
    this.size = 60;
    this.current = null;
    this.width = 0;
    this.height = 0;
    this.cursor = document.createElement("div");
    this.cursor.className = "brush-cursor";
    this.cursor.hidden = true;
    stage.appendChild(this.cursor);
    this._listen();
  }

  MaskPainter.prototype.setSize = function (width, height) {
    this.width = width;
    this.height = height;
    this.canvas.width = width;
    this.canvas.height = height;
    this.operations = [];
    this.undone = [];
    this._redraw();
  };

  MaskPainter.prototype._point = function (event) {
    var box = this.canvas.getBoundingClientRect();
    return [
      (event.clientX - box.left) * (this.width / box.width),
      (event.clientY - box.top) * (this.height / box.height),
    ];
  };

  MaskPainter.prototype._listen = function () {
    var painter = this;
    var canvas = this.canvas;
    canvas.addEventListener("pointerdown", function (event) {
      if (!painter.width || event.button !== 0) return;
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      painter.current = { type: "stroke", tool: painter.tool, size: painter.size, points: [] };
      painter.operations.push(painter.current);
      painter.undone = [];
      painter._extend(painter._point(event));
    });
    canvas.addEventListener("pointermove", function (event) {
      painter._moveCursor(event);
      if (!painter.current) return;
      var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      events.forEach(function (each) { painter._extend(painter._point(each)); });
    });
    function finish() {
      if (!painter.current) return;
      painter.current = null;
      painter.onChange();
    }
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
    canvas.addEventListener("pointerleave", function () { painter.cursor.hidden = true; });
  };

  MaskPainter.prototype._moveCursor = function (event) {
    var box = this.canvas.getBoundingClientRect();
    var stageBox = this.stage.getBoundingClientRect();
    var diameter = this.size * (box.width / (this.width || 1));
    this.cursor.hidden = false;
    this.cursor.style.width = this.cursor.style.height = diameter + "px";
    this.cursor.style.left = (event.clientX - stageBox.left - diameter / 2) + "px";
    this.cursor.style.top = (event.clientY - stageBox.top - diameter / 2) + "px";
    this.cursor.classList.toggle("erasing", this.tool === "erase");
  };

  MaskPainter.prototype._extend = function (point) {
    var stroke = this.current;
    var previous = stroke.points[stroke.points.length - 1];
    stroke.points.push(point);
    this._drawSegment(stroke, previous || point, point);
  };

  MaskPainter.prototype._drawSegment = function (stroke, from, to) {
    var context = this.context;
    context.save();
    context.globalCompositeOperation = stroke.tool === "erase" ? "destination-out" : "source-over";
    context.strokeStyle = context.fillStyle = PAINT;
    context.lineWidth = stroke.size;
    context.lineCap = context.lineJoin = "round";
    if (from[0] === to[0] && from[1] === to[1]) {
      context.beginPath();
      context.arc(to[0], to[1], stroke.size / 2, 0, 2 * Math.PI);
      context.fill();
    } else {
      context.beginPath();
      context.moveTo(from[0], from[1]);
      context.lineTo(to[0], to[1]);
      context.stroke();
    }
    context.restore();
  };

  MaskPainter.prototype._apply = function (operation) {
    var context = this.context;
    if (operation.type === "stroke") {
      for (var i = 0; i < operation.points.length; i++) {
        this._drawSegment(operation, operation.points[Math.max(0, i - 1)], operation.points[i]);
      }
    } else if (operation.type === "clear") {
      context.clearRect(0, 0, this.width, this.height);
    } else if (operation.type === "invert") {
      context.save();
      context.globalCompositeOperation = "xor";
      context.fillStyle = PAINT;
      context.fillRect(0, 0, this.width, this.height);
      context.restore();
    } else if (operation.type === "layer") {
      context.clearRect(0, 0, this.width, this.height);
      context.drawImage(operation.layer, 0, 0);
    }
  };

  MaskPainter.prototype._redraw = function () {
    this.context.clearRect(0, 0, this.width, this.height);
    this.operations.forEach(this._apply, this);
  };

  MaskPainter.prototype._push = function (operation) {
    this.operations.push(operation);
    this.undone = [];
    this._apply(operation);
    this.onChange();
  };

  MaskPainter.prototype.undo = function () {
    if (!this.operations.length) return;
    this.undone.push(this.operations.pop());
    this._redraw();
    this.onChange();
  };
  MaskPainter.prototype.redo = function () {
    if (!this.undone.length) return;
    this.operations.push(this.undone.pop());
    this._redraw();
    this.onChange();
  };
  MaskPainter.prototype.canRedo = function () { return this.undone.length > 0; };
  MaskPainter.prototype.clear = function () { this._push({ type: "clear" }); };
  MaskPainter.prototype.invert = function () { this._push({ type: "invert" }); };
  MaskPainter.prototype.canUndo = function () { return this.operations.length > 0; };

  // Show an uploaded mask: its transparent pixels become painted ones, ready to refine.
  MaskPainter.prototype.loadMask = function (image) {
    var layer = document.createElement("canvas");
    layer.width = this.width;
    layer.height = this.height;
    var context = layer.getContext("2d", { willReadFrequently: true });
    context.drawImage(image, 0, 0, this.width, this.height);
    var pixels = context.getImageData(0, 0, this.width, this.height);
    var data = pixels.data;
    for (var i = 0; i < data.length; i += 4) {
      var editable = data[i + 3] === 0;
      data[i] = 255; data[i + 1] = 0; data[i + 2] = 110;
      data[i + 3] = editable ? 255 : 0;
    }
    context.putImageData(pixels, 0, 0);
    this.operations = [{ type: "layer", layer: layer }];
    this.undone = [];
    this._redraw();
  };

  // Share of the image marked to change (0-1), measured on a small copy.
  MaskPainter.prototype.coverage = function () {
    if (!this.width) return 0;
    var small = document.createElement("canvas");
    var scale = Math.min(1, 160 / Math.max(this.width, this.height));
    small.width = Math.max(1, Math.round(this.width * scale));
    small.height = Math.max(1, Math.round(this.height * scale));
    var context = small.getContext("2d", { willReadFrequently: true });
    context.drawImage(this.canvas, 0, 0, small.width, small.height);
    var data = context.getImageData(0, 0, small.width, small.height).data;
    var painted = 0;
    for (var i = 3; i < data.length; i += 4) if (data[i] >= 128) painted += 1;
    return painted / (small.width * small.height);
  };

  // The mask as the Image API reads it: alpha 0 where painted, 255 elsewhere, RGB black.
  MaskPainter.prototype.toMaskBlob = function () {
    var painter = this;
    var out = document.createElement("canvas");
    out.width = this.width;
    out.height = this.height;
    var context = out.getContext("2d");
    var source = this.context.getImageData(0, 0, this.width, this.height).data;
    var mask = context.createImageData(this.width, this.height);
    var data = mask.data;
    for (var i = 3; i < data.length; i += 4) data[i] = source[i] >= 128 ? 0 : 255;
    context.putImageData(mask, 0, 0);
    return new Promise(function (resolve) {
      out.toBlob(function (blob) {
        resolve(new File([blob], "painted-mask.png", { type: "image/png" }));
      }, "image/png");
    }).then(function (file) {
      painter.exported = file;
      return file;
    });
  };

  window.MaskPainter = MaskPainter;
})();
