// The fallback of coursekit-widgets.js: on a page with a widget it cannot draw, it loads this
// file, then RequireJS and the widget manager (vendor/), in that order.
// 1. The widget manager loads its fonts from next to its own AMD module: map that module
//    to the book's vendor folder (a global `require` object is RequireJS's start-up config).
(function () {
  var vendor = new URL("vendor/", document.currentScript.src).href;
  window.require = { paths: { "@jupyter-widgets/html-manager/dist": vendor.replace(/\/$/, "") } };
  window.__jupyter_widgets_assets_path__ = vendor;
})();
// 2. ipywidgets typesets labels with MathJax 2's MathJax.Hub.Queue; the book runs MathJax 3.
(function () {
  function shim() {
    var mj = window.MathJax;
    if (mj && !mj.Hub) {
      mj.Hub = {
        Queue: function (job) {
          var el = Array.isArray(job) ? job[2] : undefined;
          if (mj.typesetPromise) { mj.typesetPromise(el ? [el] : undefined).catch(function () {}); }
        },
      };
    }
  }
  shim();
  if (window.coursekitMath) { window.coursekitMath.then(shim); }
})();
// 3. Accessibility of the manager's experiments (ipywidgets leaves these out):
//    - each frame's alt text comes from the title the Python side sets (what it shows, with the
//      control values);
//    - a slider handle is named after its control and reads out its value, not its index.
(function () {
  function fix() {
    document.querySelectorAll(".coursekit-experiment img").forEach(function (img) {
      var t = img.getAttribute("title");
      if (t) { img.setAttribute("alt", t); img.removeAttribute("title"); }
      else if (!img.hasAttribute("alt")) { img.setAttribute("alt", "experiment figure"); }
    });
    document.querySelectorAll(".coursekit-experiment .widget-slider").forEach(function (w) {
      var h = w.querySelector(".noUi-handle"), l = w.querySelector(".widget-label"),
          r = w.querySelector(".widget-readout");
      if (!h) { return; }
      var name = l ? l.textContent.trim() : "", value = r ? r.textContent.trim() : "";
      if (name && h.getAttribute("aria-label") !== name) { h.setAttribute("aria-label", name); }
      if (value && h.getAttribute("aria-valuetext") !== value) { h.setAttribute("aria-valuetext", value); }
    });
  }
  var queued = false;
  function schedule() {
    if (!queued) { queued = true; requestAnimationFrame(function () { queued = false; fix(); }); }
  }
  new MutationObserver(schedule).observe(document.body, {
    subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ["title", "aria-valuenow", "aria-valuetext"],
  });
})();
