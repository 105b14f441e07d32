// Everyday keys and buttons, on any page that has them. Ctrl/Cmd+Enter sends the form marked
// data-submit-shortcut (from any of its fields: the composer, the edit page, a conversation);
// `?` opens the page's list of shortcuts (#shortcut-help); a button with data-copy puts that
// text on the clipboard. The review page keeps its own keys (review.js).
(function () {
  "use strict";

  function isTyping(target) {
    var tag = target && target.tagName ? target.tagName.toLowerCase() : "";
    if (tag === "textarea" || tag === "select" || (target && target.isContentEditable)) return true;
    return tag === "input" && !/^(radio|checkbox|button|submit|range|file)$/.test(target.type);
  }

  function shortcutForm(target) {
    var inside = target && target.closest ? target.closest("form[data-submit-shortcut]") : null;
    var forms = document.querySelectorAll("form[data-submit-shortcut]");
    return inside || (forms.length === 1 ? forms[0] : null);
  }

  function send(form) {
    var button = form.querySelector("[data-submit-default]");
    if (button && button.disabled) {
      button.focus(); // its status line says why it cannot go yet
      return;
    }
    if (form.requestSubmit) form.requestSubmit(button || undefined);
    else if (button) button.click();
    else form.submit();
  }

  function toggleHelp() {
    var dialog = document.getElementById("shortcut-help");
    if (!dialog) return false;
    if (dialog.open) dialog.close();
    else dialog.showModal();
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.altKey) {
      var form = shortcutForm(event.target);
      if (!form) return;
      event.preventDefault();
      send(form);
      return;
    }
    if (document.querySelector(".review-page")) return;
    if (event.key !== "?" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target)) return;
    if (toggleHelp()) event.preventDefault();
  });

  function copied(button, text) {
    var label = button.textContent;
    button.textContent = text;
    setTimeout(function () { button.textContent = label; }, 1500);
  }

  function copyByHand(text) {
    // Without the async clipboard (plain http, older browsers): select and copy.
    var field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.style.position = "fixed";
    field.style.opacity = "0";
    document.body.appendChild(field);
    field.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (error) { done = false; }
    field.remove();
    return done;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (button) {
      var text = button.dataset.copy;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { copied(button, "Copied"); },
          function () { copied(button, copyByHand(text) ? "Copied" : "Copy failed"); }
        );
      } else {
        copied(button, copyByHand(text) ? "Copied" : "Copy failed");
      }
      return;
    }
    var opener = event.target.closest ? event.target.closest("[data-shortcut-list]") : null;
    if (opener) toggleHelp();
  });
})();
