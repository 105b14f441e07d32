// The upload and mask rules, checked in the browser before anything is uploaded.
//
// The rules and their messages come from studio/imagerules.py (rendered into the page as
// JSON); the server checks everything again and is the one that counts. Files are read as
// bytes and parsed here (PNG chunks, JPEG segments, WebP RIFF chunks, EXIF) rather than
// decoded: a 20000x20000 "decompression bomb" is refused from its header, and a truncated
// file, bytes after the end of a PNG or WebP, or GPS coordinates are found without
// trusting the browser's forgiving decoder.
(function () {
  "use strict";

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, name) {
      return values[name] === undefined ? "{" + name + "}" : String(values[name]);
    });
  }

  var MEGABYTE = 1024 * 1024;

  // imagerules.megabytes: rounded half up in whole numbers, so both show the same figure.
  function megabytes(size, decimals) {
    if (decimals === undefined) decimals = 1;
    var unit = Math.pow(10, decimals);
    var scaled = Math.floor((size * unit * 2 + MEGABYTE) / (2 * MEGABYTE));
    var whole = Math.floor(scaled / unit);
    var digits = decimals ? String(scaled % unit).padStart(decimals, "0").replace(/0+$/, "") : "";
    return digits ? whole + "." + digits + " MB" : whole + " MB";
  }

  // imagerules.sizes_apart: as many decimals as it takes to tell the two apart, else bytes.
  function sizesApart(limit, size) {
    for (var decimals = 1; decimals <= 3; decimals++) {
      var shown = [megabytes(limit, decimals), megabytes(size, decimals)];
      if (shown[0] !== shown[1]) return shown;
    }
    return [thousands(limit) + " bytes", thousands(size) + " bytes"];
  }

  function thousands(number) {
    return number.toLocaleString("en-US");
  }

  function ascii(bytes, start, length) {
    var text = "";
    for (var i = start; i < start + length && i < bytes.length; i++) {
      text += String.fromCharCode(bytes[i]);
    }
    return text;
  }

  // --- EXIF (a TIFF structure): orientation and whether GPS coordinates are present ---
  function readTiff(view, start, end) {
    var found = { orientation: 1, gps: false };
    if (end - start < 8) return found;
    var order = ascii(new Uint8Array(view.buffer, view.byteOffset + start, 2), 0, 2);
    var little = order === "II";
    if (!little && order !== "MM") return found;
    function u16(at) { return at + 2 <= end ? view.getUint16(at, little) : -1; }
    function u32(at) { return at + 4 <= end ? view.getUint32(at, little) : -1; }
    function entries(ifdOffset, visit) {
      var at = start + ifdOffset;
      var count = u16(at);
      if (count < 0 || count > 1000) return;
      for (var i = 0; i < count; i++) {
        var entry = at + 2 + i * 12;
        if (entry + 12 > end) return;
        visit(u16(entry), entry);
      }
    }
    if (u16(start + 2) !== 42) return found;
    var gpsOffset = -1;
    entries(u32(start + 4), function (tag, entry) {
      if (tag === 0x0112) found.orientation = u16(entry + 8);
      if (tag === 0x8825) gpsOffset = u32(entry + 8);
    });
    if (gpsOffset > 0) {
      entries(gpsOffset, function (tag) {
        if (tag === 2 || tag === 4) found.gps = true; // GPSLatitude, GPSLongitude
      });
    }
    return found;
  }

  function mergeExif(info, view, start, end) {
    var exif = readTiff(view, start, end);
    info.gps = info.gps || exif.gps;
    if (exif.orientation >= 5 && exif.orientation <= 8) info.rotated = true;
  }

  // --- PNG: walk the chunks to IEND ---
  function parsePng(bytes, view, info) {
    info.format = "png";
    var at = 8;
    var sawHeader = false;
    while (at + 8 <= bytes.length) {
      var length = view.getUint32(at);
      var type = ascii(bytes, at + 4, 4);
      var data = at + 8;
      var next = data + length + 4;
      if (next > bytes.length) { info.damaged = true; return; }
      if (type === "IHDR" && length >= 13) {
        info.width = view.getUint32(data);
        info.height = view.getUint32(data + 4);
        var colorType = bytes[data + 9];
        info.hasAlpha = colorType === 4 || colorType === 6;
        sawHeader = true;
      } else if (type === "tRNS") {
        info.hasAlpha = true;
      } else if (type === "eXIf") {
        mergeExif(info, view, data, data + length);
      } else if (type === "IEND") {
        info.trailing = bytes.length - next;
        return;
      }
      at = next;
    }
    if (!sawHeader) info.format = null;
    info.damaged = true; // no IEND: cut short
  }

  // --- JPEG: segments up to the scan, then the end-of-image marker ---
  function parseJpeg(bytes, view, info) {
    info.format = "jpeg";
    var at = 2;
    while (at + 4 <= bytes.length) {
      if (bytes[at] !== 0xff) { info.damaged = true; return; }
      var marker = bytes[at + 1];
      if (marker === 0xff) { at += 1; continue; } // fill byte
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
        at += 2;
        continue;
      }
      var length = view.getUint16(at + 2);
      var data = at + 4;
      if (data + length - 2 > bytes.length) { info.damaged = true; return; }
      var isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 &&
        marker !== 0xcc;
      if (isFrame && length >= 7) {
        info.height = view.getUint16(data + 1);
        info.width = view.getUint16(data + 3);
      } else if (marker === 0xe1 && ascii(bytes, data, 6) === "Exif\u0000\u0000") {
        mergeExif(info, view, data + 6, data + length - 2);
      } else if (marker === 0xda) {
        // Entropy-coded data follows; a whole file ends with FFD9 somewhere after it.
        for (var i = data + length - 2; i + 1 < bytes.length; i++) {
          if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return;
        }
        info.damaged = true;
        return;
      } else if (marker === 0xd9) {
        info.damaged = true; // an end before any scan
        return;
      }
      at = data + length - 2;
    }
    info.damaged = true;
  }

  // --- WebP: the RIFF container says exactly how long it is ---
  function parseWebp(bytes, view, info) {
    info.format = "webp";
    var riffEnd = 8 + view.getUint32(4, true);
    riffEnd += riffEnd % 2;
    if (riffEnd > bytes.length) { info.damaged = true; }
    var at = 12;
    while (at + 8 <= Math.min(riffEnd, bytes.length)) {
      var type = ascii(bytes, at, 4);
      var length = view.getUint32(at + 4, true);
      var data = at + 8;
      if (data + length > bytes.length) { info.damaged = true; break; }
      if (type === "VP8X" && length >= 10) {
        info.hasAlpha = (bytes[data] & 0x10) !== 0;
        info.width = 1 + (bytes[data + 4] | (bytes[data + 5] << 8) | (bytes[data + 6] << 16));
        info.height = 1 + (bytes[data + 7] | (bytes[data + 8] << 8) | (bytes[data + 9] << 16));
      } else if (type === "VP8 " && length >= 10 && !info.width) {
        info.width = view.getUint16(data + 6, true) & 0x3fff;
        info.height = view.getUint16(data + 8, true) & 0x3fff;
      } else if (type === "VP8L" && length >= 5 && !info.width) {
        var bits = view.getUint32(data + 1, true);
        info.width = 1 + (bits & 0x3fff);
        info.height = 1 + ((bits >> 14) & 0x3fff);
        info.hasAlpha = info.hasAlpha || ((bits >> 28) & 1) === 1;
      } else if (type === "ALPH") {
        info.hasAlpha = true;
      } else if (type === "EXIF") {
        var start = ascii(bytes, data, 6) === "Exif\u0000\u0000" ? data + 6 : data;
        mergeExif(info, view, start, data + length);
      }
      at = data + length + (length % 2);
    }
    if (!info.damaged && bytes.length > riffEnd) info.trailing = bytes.length - riffEnd;
  }

  function sniff(bytes) {
    if (bytes.length >= 8 && bytes[0] === 0x89 && ascii(bytes, 1, 3) === "PNG") return "png";
    if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
      return "jpeg";
    }
    if (bytes.length >= 12 && ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 4) === "WEBP") {
      return "webp";
    }
    return null;
  }

  // What a file is, read from its bytes. Files over `skipAbove` bytes are not read at all.
  function inspect(file, skipAbove) {
    var info = {
      name: file.name, bytes: file.size, format: null, width: 0, height: 0,
      hasAlpha: false, damaged: false, trailing: 0, gps: false, rotated: false, read: false,
    };
    if (file.size > skipAbove) return Promise.resolve(info);
    return file.arrayBuffer().then(function (buffer) {
      var bytes = new Uint8Array(buffer);
      var view = new DataView(buffer);
      info.read = true;
      var kind = sniff(bytes);
      try {
        if (kind === "png") parsePng(bytes, view, info);
        else if (kind === "jpeg") parseJpeg(bytes, view, info);
        else if (kind === "webp") parseWebp(bytes, view, info);
      } catch (error) {
        info.damaged = true; // a RangeError: a length that points past the end
      }
      if (info.format && (!info.width || !info.height)) info.damaged = true;
      if (info.rotated) {
        var width = info.width;
        info.width = info.height;
        info.height = width;
      }
      return info;
    });
  }

  function shown(info, messages) {
    return info.format ? info.format.toUpperCase() : messages.unreadable;
  }

  // The first rule an input image (source or reference) breaks, or null.
  function inputProblem(info, rules) {
    var messages = rules.messages;
    var input = rules.input;
    if (info.bytes > input.max_bytes) {
      var inputSizes = sizesApart(input.max_bytes, info.bytes);
      return format(messages.input_bytes, { limit: inputSizes[0], size: inputSizes[1] });
    }
    if (!info.format || input.formats.indexOf(info.format) < 0) {
      return format(messages.input_format, { shown: shown(info, messages) });
    }
    if (info.width * info.height > input.max_pixels) {
      return format(messages.input_pixels, {
        max_pixels: thousands(input.max_pixels), pixels: thousands(info.width * info.height),
      });
    }
    return commonProblem(info, messages);
  }

  function commonProblem(info, messages) {
    if (info.damaged) return format(messages.damaged, { format: info.format.toUpperCase() });
    if (info.trailing > 0) {
      return format(messages.trailing_data, {
        extra: thousands(info.trailing), format: info.format.toUpperCase(),
      });
    }
    return null;
  }

  // The rules a mask breaks against its source ({width, height}), as one message, or null.
  function maskProblem(info, source, rules) {
    var messages = rules.messages;
    var mask = rules.mask;
    if (info.bytes > mask.max_bytes) {
      var maskSizes = sizesApart(mask.max_bytes, info.bytes);
      return format(messages.mask_bytes, { limit: maskSizes[0], size: maskSizes[1] });
    }
    if (source && info.width * info.height > rules.input.max_pixels) {
      // A bomb is named as one: too many pixels, not a mask of "another size".
      return format(messages.mask_pixels, {
        pixels: thousands(info.width * info.height), width: source.width, height: source.height,
      });
    }
    var problems = [];
    if (info.format !== mask.format) {
      problems.push(format(messages.mask_format, { shown: shown(info, messages) }));
    } else if (!info.hasAlpha) {
      problems.push(messages.mask_alpha);
    }
    if (info.format && !info.damaged && source &&
        (info.width !== source.width || info.height !== source.height)) {
      problems.push(format(messages.mask_size, {
        mask_width: info.width, mask_height: info.height,
        width: source.width, height: source.height,
      }));
    }
    if (problems.length) return problems.join(" ");
    return commonProblem(info, messages);
  }

  function gpsProblem(info, rules) {
    return info.gps ? rules.messages.gps : null;
  }

  function countProblem(count, rules) {
    if (count > rules.input.max_images) {
      return format(rules.messages.too_many_inputs, {
        max_images: rules.input.max_images, count: count,
      });
    }
    return null;
  }

  window.ImageCheck = {
    inspect: inspect,
    inputProblem: function (info, rules) {
      return inputProblem(info, rules) || gpsProblem(info, rules);
    },
    maskProblem: maskProblem,
    countProblem: countProblem,
    megabytes: megabytes,
    sizesApart: sizesApart,
  };
})();
