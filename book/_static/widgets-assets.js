// Loaded before RequireJS and the widget manager (see nb_ipywidgets_js in _config.yml).
// 1. The widget manager loads its fonts from next to its own AMD module: map that module
//    to the book's vendor folder (a global `require` object is RequireJS's start-up config).
(function () {
  var vendor = new URL("vendor/", document.currentScript.src).href;
  window.require = { paths: { "@jupyter-widgets/html-manager/dist": vendor.replace(/\/$/, "") } };
  window.__jupyter_widgets_assets_path__ = vendor;
})();
// 2. ipywidgets typesets labels with MathJax 2's MathJax.Hub.Queue; the book runs MathJax 3.
//    This listener is registered before the widget manager's, so the shim is in place first.
document.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (mj && !mj.Hub) {
    mj.Hub = {
      Queue: function (job) {
        var el = Array.isArray(job) ? job[2] : undefined;
        if (mj.typesetPromise) { mj.typesetPromise(el ? [el] : undefined).catch(function () {}); }
      },
    };
  }
});
// 3. Accessibility of the experiments (ipywidgets leaves these out):
//    - each frame's alt text comes from the title the Python side sets (what it shows, with the
//      control values);
//    - a slider handle is named after its control and reads out its value, not its index;
//    - a skip link leads straight to the first experiment's controls.
(function () {
  function fix() {
    var first = document.querySelector(".coursekit-experiment");
    if (first && !first.id) { first.id = "coursekit-first-experiment"; }
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
  function firstControl() {
    var exp = document.querySelector(".coursekit-experiment");
    return exp && exp.querySelector(".noUi-handle, select, button, input");
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (!document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]')) { return; }
    new MutationObserver(schedule).observe(document.body, {
      subtree: true, childList: true, characterData: true,
      attributes: true, attributeFilter: ["title", "aria-valuenow", "aria-valuetext"],
    });
    var skip = document.createElement("a");
    skip.className = "skip-link coursekit-skip";
    skip.href = "#coursekit-first-experiment";
    skip.textContent = "Skip to the first experiment";
    skip.addEventListener("click", function (e) {
      var c = firstControl();
      if (c) { e.preventDefault(); c.scrollIntoView({ block: "center" }); c.focus(); }
    });
    var main = document.querySelector(".skip-link");
    if (main && main.parentNode) { main.parentNode.insertBefore(skip, main.nextSibling); }
    else { document.body.insertBefore(skip, document.body.firstChild); }
  });
})();
// 4. Math after the experiments. On pages with experiments book/_ext turns MathJax's script tag
//    into one the browser ignores; it is fetched here once the widget manager has drawn the
//    experiments (it draws on `load`). window.coursekitMath resolves when the math is typeset.
(function () {
  var started = false, resolve;
  window.coursekitMath = new Promise(function (r) { resolve = r; });
  function typeset() {
    if (started) { return; }
    started = true;
    var later = document.querySelector('script[type="text/x-coursekit-later"]');
    if (later && !(window.MathJax && window.MathJax.version)) {
      var js = document.createElement("script");
      js.src = later.getAttribute("src");
      document.head.appendChild(js);
    } else if (!later && !(window.MathJax && window.MathJax.version)) {
      resolve();  // a page without math
      return;
    }
    (function whenReady() {
      var mj = window.MathJax;
      if (mj && mj.version && mj.startup && mj.startup.promise) {
        mj.startup.promise.then(resolve, resolve);  // MathJax typesets the page as it starts
      } else { setTimeout(whenReady, 50); }
    })();
  }
  window.addEventListener("load", function () {
    if (!document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]')) {
      typeset();
      return;
    }
    var poll = setInterval(function () {
      if (document.querySelector(".coursekit-experiment img[alt]")) {
        clearInterval(poll);
        setTimeout(typeset, 100);
      }
    }, 50);
    setTimeout(function () { clearInterval(poll); typeset(); }, 5000);
  });
})();
