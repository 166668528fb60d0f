/* The book's experiments, drawn without the 3.6 MB widget manager.
 *
 * A chapter page embeds what the notebook's kernel left behind, as ipywidgets does: one
 * <script type="application/vnd.jupyter.widget-state+json"> with every widget model, and a
 * <script type="application/vnd.jupyter.widget-view+json"> where each widget was shown.
 * Experiment.widget(mode="static") (coursekit/widgets.py) emits only a few kinds of models:
 *
 *   VBox(.coursekit-experiment)
 *   ├── HBox: one SelectionSlider, Dropdown or ToggleButtons per control
 *   └── Stack > Stack > ... > Image    one nesting level per control, a frame at each leaf
 *   Link(control.index -> stack.selected_index)   one per Stack (ipywidgets' jslink)
 *   Layout and Style models               CSS of the above
 *
 * This file draws exactly those, with native, accessible elements (<input type="range">,
 * <select>, buttons with aria-pressed), as soon as the page is parsed: no `load`, no RequireJS.
 * A Stack builds a child only when it is shown, so only the frames in view get an image source.
 * If a page holds ANY model this file does not know, it loads RequireJS and the widget manager
 * (vendor/) instead, as the book did before, so nothing breaks.
 *
 * window.coursekitWidgets = {mode: "native" | "manager", drawn: Promise} says which one drew;
 * `drawn` resolves when the experiments show their first frames.
 * Also here, for both: the skip link to the first experiment, and MathJax after the experiments.
 */
(function () {
  "use strict";
  var STATE_TYPE = "application/vnd.jupyter.widget-state+json",
      VIEW_TYPE = "application/vnd.jupyter.widget-view+json",
      REF = "IPY_MODEL_",
      here = new URL(".", document.currentScript.src).href;  // .../_static/

  // ---- Models: a bag of state with change listeners ---------------------------------------
  function Model(id, spec) {
    this.id = id;
    this.name = spec.model_name;
    this.state = Object.assign({}, spec.state);
    this.listeners = {};
    // Binary traits (an Image's bytes) travel base64-encoded beside the state.
    (spec.buffers || []).forEach(function (b) {
      if (b.encoding !== "base64" || b.path.length !== 1) { throw new Error("buffer " + b.path + " not base64"); }
      this.state[b.path[0]] = { base64: b.data };
    }, this);
  }
  Model.prototype.get = function (key) { return this.state[key]; };
  Model.prototype.set = function (key, value) {
    if (this.state[key] === value) { return; }
    this.state[key] = value;
    (this.listeners[key] || []).forEach(function (fn) { fn(value); });
  };
  Model.prototype.on = function (key, fn) { (this.listeners[key] = this.listeners[key] || []).push(fn); };

  // ---- Views: one function per model name, model -> DOM element ------------------------------
  var uid = 0;
  function newId(kind) { uid += 1; return "ck-" + kind + "-" + uid; }

  function el(tag, className, attrs) {
    var e = document.createElement(tag);
    if (className) { e.className = className; }
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  // A Layout model is CSS with underscores: max_width -> max-width.
  function applyLayout(e, layout) {
    if (!layout) { return; }
    Object.keys(layout.state).forEach(function (k) {
      var v = layout.state[k];
      if (k.charAt(0) !== "_" && v !== null && v !== undefined && v !== "") {
        e.style.setProperty(k.replace(/_/g, "-"), String(v));
      }
    });
  }

  // What every widget has: its classes, layout and tooltip.
  function common(e, m) {
    (m.get("_dom_classes") || []).forEach(function (c) { e.classList.add(c); });
    applyLayout(e, m.get("layout"));
    return e;
  }

  // The label of a control: <label for> when it names one form element, text otherwise.
  function description(m, forId) {
    var text = m.get("description") || "", style = m.get("style"),
        label = el(forId ? "label" : "span", "widget-label", forId ? { for: forId } : {});
    label.textContent = text;
    label.id = newId("label");
    var width = style && style.get("description_width");
    if (width && width !== "initial") { label.style.width = width; }
    if (!text) { label.style.display = "none"; }
    return label;
  }

  function optionLabels(m) { return m.get("_options_labels") || []; }

  function box(kind) {
    return function (m, draw) {
      var e = common(el("div", "widget-container widget-box " + kind), m);
      var kids = (m.get("children") || []).map(draw);
      kids.forEach(function (k) { e.appendChild(k); });
      e.ckPrepare = function () { kids.forEach(prepare); };
      return e;
    };
  }

  // A Stack shows one child. Children are built the first time they are shown; when the reader
  // moves a control, the new frame is decoded before it replaces the old one (no blank flash).
  function stack(m, draw) {
    var e = common(el("div", "widget-container widget-box widget-stack"), m),
        built = [], ticket = 0;
    function child(i) {
      if (!built[i]) {
        built[i] = draw(m.get("children")[i]);
        built[i].style.display = "none";
        e.appendChild(built[i]);
      }
      prepare(built[i]);
      return built[i];
    }
    function selected() {
      var i = m.get("selected_index"), n = (m.get("children") || []).length;
      return i === null || i === undefined || i < 0 || i >= n ? -1 : i;
    }
    // Show the selected child at once (used when this stack itself comes into view).
    e.ckPrepare = function () {
      ticket += 1;
      var i = selected(), shown = i < 0 ? null : child(i);
      built.forEach(function (b) { if (b) { b.style.display = b === shown ? "" : "none"; } });
    };
    m.on("selected_index", function () {
      if (!e.isConnected || e.getClientRects().length === 0) { return; }  // out of sight: shown later
      var i = selected(), t = (ticket += 1);
      if (i < 0) { e.ckPrepare(); return; }
      decoded(child(i)).then(function () { if (t === ticket) { e.ckPrepare(); } });
    });
    return e;
  }

  function prepare(e) { if (e.ckPrepare) { e.ckPrepare(); } }

  // The images a subtree shows once displayed, decoded (at most 300 ms, then shown anyway).
  function decoded(root) {
    var imgs = Array.prototype.filter.call(root.querySelectorAll("img"), function (img) {
      for (var a = img; a && a !== root; a = a.parentElement) { if (a.style.display === "none") { return false; } }
      return true;
    });
    var all = Promise.all(imgs.map(function (img) { return img.decode().catch(function () {}); }));
    return Promise.race([all, new Promise(function (r) { setTimeout(r, 300); })]);
  }

  var MIME = { png: "image/png", jpeg: "image/jpeg", jpg: "image/jpeg", gif: "image/gif", webp: "image/webp",
               "svg+xml": "image/svg+xml", svg: "image/svg+xml" };

  function image(m) {
    var e = common(el("img", "widget-image", { decoding: "async" }), m), fmt = m.get("format") || "png",
        value = m.get("value") || { base64: "" };
    // The Python side puts what the frame shows, with its control values, in the tooltip.
    e.alt = m.get("tooltip") || m.get("description") || "Experiment figure";
    if (m.get("width")) { e.setAttribute("width", m.get("width")); }
    if (m.get("height")) { e.setAttribute("height", m.get("height")); }
    e.src = fmt === "url" ? atob(value.base64) : "data:" + MIME[fmt] + ";base64," + value.base64;
    return e;
  }

  // A SelectionSlider: a native range over the option indices; it reads out the option's label.
  function slider(m) {
    var id = newId("slider"), labels = optionLabels(m),
        e = common(el("div", "widget-inline-hbox widget-slider widget-hslider"), m),
        label = description(m, id),
        input = el("input", "widget-range", { type: "range", id: id, min: "0", max: String(labels.length - 1), step: "1" }),
        readout = el("span", "widget-readout");
    var name = m.get("description") || "";
    if (name) { input.setAttribute("aria-label", name); }
    var handle = m.get("style") && m.get("style").get("handle_color");
    if (handle) { input.style.accentColor = handle; }
    input.disabled = !!m.get("disabled");
    if (m.get("readout") === false) { readout.style.display = "none"; }
    function show(i) {
      input.value = String(i);
      readout.textContent = labels[i];
      input.setAttribute("aria-valuetext", labels[i]);
    }
    show(m.get("index") || 0);
    input.addEventListener("input", function () {
      var i = +input.value;
      readout.textContent = labels[i];
      input.setAttribute("aria-valuetext", labels[i]);
      if (m.get("continuous_update") !== false) { m.set("index", i); }
    });
    input.addEventListener("change", function () { m.set("index", +input.value); });
    m.on("index", show);
    e.append(label, input, readout);
    return e;
  }

  function dropdown(m) {
    var id = newId("select"), e = common(el("div", "widget-inline-hbox widget-dropdown"), m),
        select = el("select", "", { id: id });
    optionLabels(m).forEach(function (text, i) {
      var o = el("option", "", { value: String(i) });
      o.textContent = text;
      select.appendChild(o);
    });
    select.disabled = !!m.get("disabled");
    function show(i) { select.selectedIndex = i === null || i === undefined ? -1 : i; }
    show(m.get("index"));
    select.addEventListener("change", function () { m.set("index", select.selectedIndex); });
    m.on("index", show);
    e.append(description(m, id), select);
    return e;
  }

  // Toggle buttons: one pressed button at a time, in a named group.
  function toggles(m) {
    var e = common(el("div", "widget-inline-hbox widget-toggle-buttons"), m),
        label = description(m, null),
        group = el("div", "widget-toggle-button-group", { role: "group" }),
        tips = m.get("tooltips") || [], kind = m.get("button_style");
    if (m.get("description")) { group.setAttribute("aria-labelledby", label.id); }
    var buttons = optionLabels(m).map(function (text, i) {
      var b = el("button", "widget-toggle-button jupyter-button" + (kind ? " mod-" + kind : ""), { type: "button" });
      b.textContent = text;
      if (tips[i]) { b.title = tips[i]; }
      b.disabled = !!m.get("disabled");
      b.addEventListener("click", function () { m.set("index", i); });
      group.appendChild(b);
      return b;
    });
    function show(i) {
      buttons.forEach(function (b, k) {
        b.setAttribute("aria-pressed", String(k === i));
        b.classList.toggle("mod-active", k === i);
      });
    }
    show(m.get("index"));
    m.on("index", show);
    e.append(label, group);
    return e;
  }

  function text(m) {  // Label: plain text
    var e = common(el("div", "widget-inline-hbox widget-label-basic"), m), span = el("span");
    span.textContent = m.get("value") || "";
    e.appendChild(span);
    return e;
  }

  var VIEWS = {
    VBoxModel: box("widget-vbox"), HBoxModel: box("widget-hbox"), BoxModel: box(""), StackModel: stack,
    ImageModel: image, SelectionSliderModel: slider, DropdownModel: dropdown, ToggleButtonsModel: toggles,
    LabelModel: text,
  };
  // Models with no view of their own: CSS for others, and the links between controls and stacks.
  var PASSIVE = ["LayoutModel", "DescriptionStyleModel", "SliderStyleModel", "ToggleButtonsStyleModel",
                 "LabelStyleModel", "LinkModel", "DirectionalLinkModel"];
  var MODULES = ["@jupyter-widgets/base", "@jupyter-widgets/controls"];

  // Why this file cannot draw a model ("" when it can): an unknown model, or a feature it lacks.
  function unsupported(spec) {
    var s = spec.state || {}, name = spec.model_name;
    if (MODULES.indexOf(spec.model_module) < 0 || !(name in VIEWS || PASSIVE.indexOf(name) >= 0)) {
      return spec.model_module + " " + name;
    }
    if (name === "SelectionSliderModel" && s.orientation === "vertical") { return "a vertical slider"; }
    if (name === "ToggleButtonsModel" && (s.icons || []).some(Boolean)) { return "toggle buttons with icons"; }
    if (s.description_allow_html) { return name + " with an HTML description"; }
    if (name === "ImageModel" && !MIME[s.format || "png"] && s.format !== "url") { return "an image in " + s.format; }
    return "";
  }

  // Replace every "IPY_MODEL_<id>" in a state (also inside lists) by the model itself.
  function resolve(models, value) {
    if (typeof value === "string" && value.indexOf(REF) === 0) { return models[value.slice(REF.length)] || value; }
    if (Array.isArray(value)) { return value.map(function (v) { return resolve(models, v); }); }
    return value;
  }

  // ipywidgets' jslink: the target takes the source's value, then each follows the other.
  function link(m, twoWay) {
    var src = m.get("source"), dst = m.get("target");
    if (!src || !dst || !(src[0] instanceof Model) || !(dst[0] instanceof Model)) { return; }
    dst[0].set(dst[1], src[0].get(src[1]));
    src[0].on(src[1], function (v) { dst[0].set(dst[1], v); });
    if (twoWay) { dst[0].on(dst[1], function (v) { src[0].set(src[1], v); }); }
  }

  /** Draw every widget view of the page. Returns the images shown, or null (drawing nothing) when it cannot. */
  function drawNative() {
    var tags = document.querySelectorAll('script[type="' + STATE_TYPE + '"]');
    var models = {}, why = "";
    Array.prototype.forEach.call(tags, function (tag) {
      var doc = JSON.parse(tag.textContent);
      if (doc.version_major !== 2) { why = why || "widget state version " + doc.version_major; return; }
      Object.keys(doc.state).forEach(function (id) {
        why = why || unsupported(doc.state[id]);
        if (!why) { models[id] = new Model(id, doc.state[id]); }
      });
    });
    if (why) { console.info("coursekit-widgets: the widget manager draws this page (" + why + ")"); return null; }
    Object.keys(models).forEach(function (id) {
      var m = models[id];
      Object.keys(m.state).forEach(function (k) { m.state[k] = resolve(models, m.state[k]); });
    });
    Object.keys(models).forEach(function (id) {
      var m = models[id];
      if (m.name === "LinkModel" || m.name === "DirectionalLinkModel") { link(m, m.name === "LinkModel"); }
    });
    function draw(m) {
      if (!(m instanceof Model)) { throw new Error("a child that is no widget: " + m); }
      return VIEWS[m.name](m, draw);
    }
    var placed = [];
    try {
      document.querySelectorAll('script[type="' + VIEW_TYPE + '"]').forEach(function (tag) {
        var m = models[JSON.parse(tag.textContent).model_id];
        if (!m || !tag.parentNode) { return; }  // as the manager does: a view of an unknown model stays empty
        if (!VIEWS[m.name]) { throw new Error(m.name + " has no view"); }
        var area = el("div", "widget-subarea coursekit-widgets");
        area.appendChild(draw(m));
        tag.parentNode.insertBefore(area, tag);
        placed.push(area);
        prepare(area.firstChild);
      });
    } catch (err) {  // a bug here must not cost the reader the experiments
      placed.forEach(function (a) { a.remove(); });
      console.warn("coursekit-widgets: the widget manager draws this page:", err);
      return null;
    }
    // Stacks build only the children they show, so every image so far is one in view.
    return placed.reduce(function (imgs, a) { return imgs.concat(Array.from(a.querySelectorAll("img"))); }, []);
  }

  // ---- Fallback: the widget manager, as before -----------------------------------------------
  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = el("script", "", { src: src });
      s.async = false;
      s.onload = resolve;
      s.onerror = function () { reject(new Error("cannot load " + src)); };
      document.head.appendChild(s);
    });
  }

  function drawWithManager() {
    // widgets-assets.js configures RequireJS and adds the accessibility the manager leaves out.
    return ["widgets-assets.js", "vendor/require.js", "vendor/embed-amd.js"].reduce(function (p, src) {
      return p.then(function () { return loadScript(here + src); });
    }, Promise.resolve());
  }

  // ---- Both: when the experiments are drawn, a skip link, then the math -----------------------
  // Resolves when the widget manager's experiments show a loaded frame each (or after 10 s). It
  // reads the layout, so the native drawing, which knows its images, waits for them instead.
  function framesShown() {
    return new Promise(function (resolve) {
      var t0 = Date.now();
      (function poll() {
        var exps = document.querySelectorAll(".coursekit-experiment");
        var ok = exps.length > 0 && Array.prototype.every.call(exps, function (x) {
          return Array.prototype.some.call(x.querySelectorAll("img"), function (i) {
            return i.offsetParent !== null && i.complete && i.naturalWidth > 0;
          });
        });
        if (ok || Date.now() - t0 > 10000) { resolve(); } else { setTimeout(poll, 50); }
      })();
    });
  }

  function firstControl() {
    var exp = document.querySelector(".coursekit-experiment");
    return exp && exp.querySelector("input, select, button, .noUi-handle");
  }

  function addSkipLink() {
    var first = document.querySelector(".coursekit-experiment");
    if (first && !first.id) { first.id = "coursekit-first-experiment"; }
    var skip = el("a", "skip-link coursekit-skip", { href: "#coursekit-first-experiment" });
    skip.textContent = "Skip to the first experiment";
    skip.addEventListener("click", function (e) {
      var c = firstControl();
      if (c) { e.preventDefault(); c.scrollIntoView({ block: "center" }); c.focus(); }
    });
    var main = document.querySelector(".skip-link");
    if (main && main.parentNode) { main.parentNode.insertBefore(skip, main.nextSibling); }
    else { document.body.insertBefore(skip, document.body.firstChild); }
  }

  // book/_ext turns MathJax's script tag on pages with experiments into one the browser ignores:
  // it is fetched here once the experiments show their frames (on a slow phone, MathJax's
  // 1.2 MB held up the first usable experiment by seconds). window.coursekitMath resolves
  // when the math is typeset.
  var mathDone;
  window.coursekitMath = new Promise(function (r) { mathDone = r; });
  function typesetMath() {
    var later = document.querySelector('script[type="text/x-coursekit-later"]');
    if (!later || (window.MathJax && window.MathJax.version)) { mathDone(); return; }
    document.head.appendChild(el("script", "", { src: later.getAttribute("src") }));
    (function whenReady() {
      var mj = window.MathJax;
      if (mj && mj.version && mj.startup && mj.startup.promise) { mj.startup.promise.then(mathDone, mathDone); }
      else { setTimeout(whenReady, 50); }
    })();
  }

  function start() {
    if (!document.querySelector('script[type="' + STATE_TYPE + '"]')) { typesetMath(); return; }
    var imgs = null;
    // ?widgets=manager forces the fallback (benchmarks/bench_book_tti.py compares the two).
    if (!/[?&]widgets=manager(&|$)/.test(location.search)) {
      try { imgs = drawNative(); } catch (err) { console.warn("coursekit-widgets:", err); }
    }
    var drawn = imgs ? Promise.all(imgs.map(function (i) { return i.decode().catch(function () {}); }))
                     : drawWithManager().then(framesShown);
    window.coursekitWidgets = { mode: imgs ? "native" : "manager", drawn: drawn };
    addSkipLink();
    drawn.then(function () { setTimeout(typesetMath, 100); });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();
