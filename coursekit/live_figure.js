// The live figure of an Experiment in JupyterLab (an anywidget; the Python side is
// coursekit/widgets.py, class LiveFigure).
//
// The browser keeps every frame it has received, keyed by the controls' indices ("2,0").
// When a control moves, the frame is looked up here, in the page: a frame seen before, or one
// the kernel drew ahead in the background and pushed, shows at once, with no round trip to the
// kernel. Otherwise the view waits (aria-busy) for the kernel, which sees the control's new index
// through the control's own widget model, draws the frame and pushes it.
//
// Messages from the kernel: {frame: [i, j, ...], alt: "..."} with the image bytes as one buffer.
// Message to the kernel: {hello: true} when a view starts with an empty cache (a reload), so the
// kernel sends frames again instead of believing the page has them.

const MAX_FRAMES = 400; // one Experiment has at most 400 frames (coursekit.widgets.MAX_FRAMES)

function cacheKey(index) {
  return index.join(",");
}

// Name each slider handle after its control and make it read out the value, not the index
// (ipywidgets leaves both out; screen readers would say "3" for a learning rate of 0.4).
function labelSliders(box) {
  box.querySelectorAll(".widget-slider").forEach((w) => {
    const h = w.querySelector(".noUi-handle");
    const l = w.querySelector(".widget-label");
    const r = w.querySelector(".widget-readout");
    if (!h) return;
    const name = l ? l.textContent.trim() : "";
    const value = r ? r.textContent.trim() : "";
    if (name && h.getAttribute("aria-label") !== name) h.setAttribute("aria-label", name);
    if (value && h.getAttribute("aria-valuetext") !== value) h.setAttribute("aria-valuetext", value);
  });
}

async function render({ model, el }) {
  const img = document.createElement("img");
  img.className = "coursekit-frame";
  img.style.maxWidth = "100%";
  el.appendChild(img);
  const type = `image/${model.get("format")}`;
  const frames = new Map(); // key -> {src, alt}, oldest first

  function keep(key, bytes, alt) {
    if (frames.has(key)) return frames.get(key); // a frame never changes: keep its URL
    const src = URL.createObjectURL(new Blob([bytes], { type }));
    frames.set(key, { src, alt });
    if (frames.size > MAX_FRAMES) {
      const [first, f] = frames.entries().next().value;
      if (first !== shown) {
        URL.revokeObjectURL(f.src);
        frames.delete(first);
      }
    }
    return frames.get(key);
  }

  let shown = null; // key of the frame on screen
  let wanted = null; // key of the frame the controls ask for
  function show(key) {
    const f = frames.get(key);
    if (!f) return false;
    img.src = f.src;
    img.alt = f.alt;
    shown = key;
    el.removeAttribute("aria-busy");
    return true;
  }

  const first = keep(cacheKey(model.get("index")), model.get("value"), model.get("alt"));
  img.src = first.src;
  img.alt = first.alt;
  shown = cacheKey(model.get("index"));

  const ids = model.get("controls").map((s) => s.replace(/^IPY_MODEL_/, ""));
  const controls = await Promise.all(ids.map((id) => model.widget_manager.get_model(id)));

  function update() {
    wanted = cacheKey(controls.map((c) => c.get("index")));
    if (!show(wanted)) el.setAttribute("aria-busy", "true");
    const box = el.closest(".coursekit-experiment");
    if (box) requestAnimationFrame(() => labelSliders(box));
  }
  function onFrame(msg, buffers) {
    if (!msg || !Array.isArray(msg.frame) || !buffers || !buffers.length) return;
    const key = cacheKey(msg.frame);
    keep(key, buffers[0], msg.alt);
    if (key === wanted && key !== shown) show(key);
  }

  model.on("msg:custom", onFrame);
  controls.forEach((c) => c.on("change:index", update));
  model.send({ hello: true });
  update();
  // The controls' views may be drawn after this one: name their handles once they are there.
  let tries = 0;
  (function labelWhenDrawn() {
    const box = el.closest(".coursekit-experiment");
    if (box && box.querySelector(".noUi-handle, select, button")) labelSliders(box);
    else if (tries++ < 100) setTimeout(labelWhenDrawn, 50);
  })();

  return () => {
    controls.forEach((c) => c.off("change:index", update));
    frames.forEach((f) => URL.revokeObjectURL(f.src));
    frames.clear();
  };
}

export default { render };
