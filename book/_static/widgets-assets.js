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
