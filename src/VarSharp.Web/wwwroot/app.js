// VarSharp page: pick a class and settings, stream a generation (POST /v1/generate/stream, Server-Sent Events) and
// watch each scale fill its tile; finished images go to the gallery, where a click reuses their settings. An image
// (from the gallery or a file) with a box dragged over it turns a generation into in- or out-painting (`edit`).
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
};

const state = {
  models: [],
  model: null,        // the selected model's description from /v1/models
  classId: null,      // null = drawn at random
  running: null,      // AbortController of the generation in flight
  galleryCount: 0,
  edit: null,         // { png: base64 PNG at the model's size, image: the drawable, box: [x0, y0, x1, y1] or null }
};

const MAX_GALLERY = 60;
const PAGE_MAX_COUNT = 4;

// ---------- models, classes and controls ----------

async function loadModels() {
  try {
    const res = await fetch("/v1/models");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    state.models = body.models;
    const select = $("model");
    select.replaceChildren(...body.models.map((m) => el("option", { value: m.name, textContent: `${m.name} · ${m.image_size}px` })));
    select.value = body.default_model;
    select.disabled = body.models.length < 2;
    selectModel(body.default_model);
    $("generate").disabled = false;
  } catch (e) {
    setStatus(`Cannot reach the server (${e.message}).`, true);
    $("generate").disabled = true;
  }
  refreshHealth();
}

function selectModel(name) {
  const m = state.models.find((x) => x.name === name);
  const previous = state.model;
  state.model = m;
  $("top-k").max = m.vocab_size;
  $("top-k").value = m.defaults.top_k;
  $("cfg").value = m.defaults.cfg;
  $("top-p").value = m.defaults.top_p;
  $("count").max = Math.min(PAGE_MAX_COUNT, m.max_count);
  syncOutputs();
  showIntegrity(m.integrity);
  if (state.edit) clearEdit();   // an image of another model's size cannot be edited by this one
  const grid = $("classes");
  // The null class (id num_classes) samples unconditionally, as the reference's negative label does.
  const buttons = [classButton(null, "Random")].concat(m.class_names.map((n, i) => classButton(i, n)), [classButton(m.num_classes, "Unconditional", true)]);
  grid.replaceChildren(...buttons);
  // Keep the kind of choice across models: Random stays Random, Unconditional stays Unconditional (the new model's
  // null class), a class id stays when the new model has it; the first model starts at class 0.
  let id = state.classId;
  if (previous && id !== null && id === previous.num_classes) id = m.num_classes;
  else if (id !== null && id >= m.num_classes) id = m.num_classes > 0 ? 0 : null;
  if (!previous && id === null && m.num_classes > 0) id = 0;
  pickClass(id);
}

// What the server checked when it loaded the model (serve --trust checks signatures; a bundle's digests are always checked).
function showIntegrity(integrity) {
  const pill = $("integrity");
  const check = integrity?.check ?? "none";
  pill.hidden = check === "none";
  if (check === "signature") {
    pill.textContent = "signed";
    pill.className = "pill ok";
    pill.title = `Signed by trusted key ${integrity.signed_by}; every file matches its manifest`;
  } else if (check === "manifest") {
    pill.textContent = "verified";
    pill.className = "pill";
    pill.title = "Every file matches the bundle's manifest" +
      (integrity.signed_by ? `; signed by key ${integrity.signed_by}, not checked (start the server with --trust)` : "; not signed");
  }
}

function classButton(id, name, unconditional = false) {
  const b = el("button", { type: "button", title: unconditional ? "No class: the model's null class, as in classifier-free guidance" : name });
  b.setAttribute("role", "radio");
  b.dataset.classId = id === null ? "" : String(id);
  if (id !== null && !unconditional) b.append(el("span", { className: "id", textContent: String(id) }));
  b.append(name);
  b.addEventListener("click", () => pickClass(id));
  return b;
}

function pickClass(id) {
  state.classId = id;
  for (const b of $("classes").children) {
    b.setAttribute("aria-checked", String(b.dataset.classId === (id === null ? "" : String(id))));
  }
}

function syncOutputs() {
  $("cfg-out").textContent = Number($("cfg").value).toFixed(1);
  $("top-p-out").textContent = Number($("top-p").value).toFixed(2);
}

function newSeed() {
  $("seed").value = Math.floor(Math.random() * 2 ** 31);
}

function readParams() {
  const intOf = (id, fallback) => {
    const v = Number.parseInt($(id).value, 10);
    return Number.isFinite(v) ? v : fallback;
  };
  const params = {
    model: state.model.name,
    count: Math.max(1, Math.min(intOf("count", 1), Number($("count").max) || 1)),
    cfg: Number($("cfg").value),
    top_k: Math.max(0, intOf("top-k", state.model.defaults.top_k)),
    top_p: Number($("top-p").value),
    seed: Math.max(0, intOf("seed", 0)),
  };
  if (state.classId !== null) params.class = state.classId;
  if (state.edit?.box) params.edit = { image: state.edit.png, box: state.edit.box, outpaint: $("edit-outpaint").checked };
  return params;
}

function applyParams(p) {
  if (p.model && p.model !== state.model.name && state.models.some((m) => m.name === p.model)) {
    $("model").value = p.model;
    selectModel(p.model);
  }
  pickClass(p.class ?? null);
  $("cfg").value = p.cfg;
  $("top-k").value = p.top_k;
  $("top-p").value = p.top_p;
  $("seed").value = p.seed;
  $("count").value = 1;
  syncOutputs();
}

// ---------- status ----------

function setStatus(text, bad = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("bad", bad);
}

async function refreshHealth() {
  const pill = $("health");
  try {
    const res = await fetch("/healthz");
    const h = await res.json();
    pill.textContent = h.queue.waiting > 0 ? `ready · ${h.queue.waiting} waiting` : "ready";
    pill.className = "pill ok";
  } catch {
    pill.textContent = "offline";
    pill.className = "pill bad";
  }
}

// ---------- the pyramid ----------

const FINAL_SIZE = 176;

// Tile sizes grow with the scale so that a row reads as a pyramid, coarse to fine, and fit the width available.
function tileSizes(count, available) {
  const weights = Array.from({ length: count }, (_, si) => 1 + (count > 1 ? si / (count - 1) : 1));
  const arrows = (count - 1) * 26;
  const fit = (available - arrows - 12 * count) / weights.reduce((a, b) => a + b, 0);
  const unit = Math.max(22, Math.min(64, fit));
  return weights.map((w) => Math.floor(unit * w));
}

function buildPyramid(start) {
  const pyramid = $("pyramid");
  const n = start.params.count;
  const S = start.patch_nums.length;
  const rows = [];
  pyramid.replaceChildren();
  const width = pyramid.clientWidth || 800;
  const sizes = tileSizes(S, width - FINAL_SIZE - 32);
  for (let i = 0; i < n; i++) {
    const row = el("div", { className: "pyramid-row" });
    const strip = el("div", { className: "strip" });
    row.dataset.image = String(i);
    const tiles = [];
    start.patch_nums.forEach((pn, si) => {
      const frame = el("div", { className: "frame" });
      frame.style.width = frame.style.height = `${sizes[si]}px`;
      const tile = el("div", { className: "tile" }, frame, el("span", { className: "label", textContent: `${pn}×${pn}` }));
      tile.dataset.scale = String(si);
      tiles.push(tile);
      strip.append(tile);
      if (si < S - 1) strip.append(el("span", { className: "arrow", textContent: "›", ariaHidden: "true" }));
    });
    const finalFrame = el("div", { className: "frame" });
    finalFrame.style.width = finalFrame.style.height = `${FINAL_SIZE}px`;
    const finalLabel = el("span", { className: "label", textContent: "generating…" });
    const final = el("div", { className: "final" }, finalFrame, finalLabel);
    row.append(strip, final);
    pyramid.append(row);
    rows.push({ tiles, finalFrame, finalLabel });
  }
  return rows;
}

function showScale(rows, ev) {
  for (const img of ev.images) {
    const row = rows[img.index];
    if (!row) continue;
    const src = `data:image/png;base64,${img.png}`;
    row.tiles.forEach((t) => t.classList.remove("current"));
    const tile = row.tiles[ev.index];
    tile.classList.add("filled", "current");
    tile.querySelector(".frame").replaceChildren(el("img", { src, alt: `after scale ${ev.index + 1} (${ev.patch_size}×${ev.patch_size})` }));
    row.finalFrame.replaceChildren(el("img", { src, alt: "latest scale" }));
    row.finalLabel.textContent = `scale ${ev.index + 1} of ${ev.num_scales}`;
  }
}

function showDone(rows, done) {
  done.images.forEach((im, i) => {
    const row = rows[i];
    if (row) {
      row.tiles.forEach((t) => t.classList.remove("current"));
      row.finalFrame.replaceChildren(el("img", { src: `data:image/png;base64,${im.png}`, alt: `${im.class_name}, seed ${im.seed}` }));
      row.finalFrame.dataset.final = "true";
      row.finalLabel.textContent = `${im.class_name} · seed ${im.seed}`;
    }
    addToGallery(done.params, im);
  });
}

// ---------- editing: an image and a box ----------

const EDIT_VIEW = 192;

// Any image (a gallery PNG or a file) is drawn at the model's size, so what is sent is always what the model takes.
let editLoads = 0;   // each load's number: a load overtaken by another one, or by Clear, is dropped

function setEditSource(src, what) {
  const load = ++editLoads;
  const image = new Image();
  image.onload = () => {
    const size = state.model.image_size;
    const canvas = el("canvas", { width: size, height: size });
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = image.naturalWidth > size;
    ctx.drawImage(image, 0, 0, size, size);
    const png = canvas.toDataURL("image/png").split(",")[1];
    const model = state.model;
    const scaled = new Image();
    scaled.onload = () => {
      // The model changed meanwhile (this image has the old one's size), or Clear or another image came after it.
      if (state.model !== model || load !== editLoads) return;
      state.edit = { png, image: scaled, box: null };
      $("edit-canvas").hidden = false;
      $("edit-clear").disabled = false;
      drawEdit();
      setStatus(`${what} is ready to edit: drag a box over it.`);
    };
    scaled.src = `data:image/png;base64,${png}`;
  };
  image.onerror = () => setStatus(`${what} is not an image this page can read.`, true);
  image.src = src;
}

function drawEdit() {
  const canvas = $("edit-canvas");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, EDIT_VIEW, EDIT_VIEW);
  if (!state.edit) return;
  ctx.drawImage(state.edit.image, 0, 0, EDIT_VIEW, EDIT_VIEW);
  const box = state.edit.box;
  if (!box) return;
  const k = EDIT_VIEW / state.model.image_size;
  const [x0, y0, x1, y1] = box.map((v) => v * k);
  const outpaint = $("edit-outpaint").checked;
  // Shade what will be regenerated; outline the box either way.
  ctx.fillStyle = "rgba(109, 93, 252, 0.35)";
  if (outpaint) {
    ctx.beginPath();
    ctx.rect(0, 0, EDIT_VIEW, EDIT_VIEW);
    ctx.rect(x0, y0, x1 - x0, y1 - y0);
    ctx.fill("evenodd");
  } else {
    ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
  }
  ctx.strokeStyle = "#6d5dfc";
  ctx.lineWidth = 2;
  ctx.strokeRect(x0 + 1, y0 + 1, x1 - x0 - 2, y1 - y0 - 2);
}

function pixelAt(ev) {
  const r = $("edit-canvas").getBoundingClientRect();
  const size = state.model.image_size;
  const clamp = (v) => Math.max(0, Math.min(size, v));
  return [clamp(Math.round(((ev.clientX - r.left) / r.width) * size)), clamp(Math.round(((ev.clientY - r.top) / r.height) * size))];
}

function wireEditCanvas() {
  const canvas = $("edit-canvas");
  let anchor = null;
  const update = (ev) => {
    const [x, y] = pixelAt(ev);
    const box = [Math.min(anchor[0], x), Math.min(anchor[1], y), Math.max(anchor[0], x), Math.max(anchor[1], y)];
    state.edit.box = box[2] > box[0] && box[3] > box[1] ? box : null;
    drawEdit();
  };
  canvas.addEventListener("pointerdown", (ev) => {
    if (!state.edit) return;
    anchor = pixelAt(ev);
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => { if (anchor) update(ev); });
  // A drag the browser takes away (a touch turning into a scroll, a lost capture) ends without moving the box further.
  for (const type of ["pointercancel", "lostpointercapture"]) canvas.addEventListener(type, () => { anchor = null; });
  canvas.addEventListener("pointerup", (ev) => {
    if (!anchor) return;
    update(ev);
    anchor = null;
    const b = state.edit.box;
    setStatus(b ? `Box ${b.join(", ")}: Generate ${$("edit-outpaint").checked ? "regenerates everything outside it" : "regenerates it"}.` : "Drag a larger box.");
  });
}

function clearEdit() {
  editLoads++;
  state.edit = null;
  $("edit-canvas").hidden = true;
  $("edit-clear").disabled = true;
  $("edit-file").value = "";
  drawEdit();
}

// ---------- the gallery ----------

function addToGallery(params, im) {
  const gallery = $("gallery");
  if (state.galleryCount === 0) gallery.replaceChildren();
  state.galleryCount++;
  // Each image's own seed reproduces it alone (count 1), so that is what a click restores. A drawn class stays drawn:
  // the image's generator draws the label before its tokens, so naming the class instead would change every later draw.
  const reuse = { model: params.model, class: params.class ?? null, cfg: params.cfg, top_k: params.top_k, top_p: params.top_p, seed: im.seed };
  const card = el("button", { type: "button", className: "card", title: "Reuse these settings" },
    el("div", { className: "thumb" }, el("img", { src: `data:image/png;base64,${im.png}`, alt: `${im.class_name}, seed ${im.seed}` })),
    el("div", { className: "meta" },
      el("span", { className: "name", textContent: im.class_name }),
      el("span", { className: "params", textContent: `seed ${im.seed}` }),
      el("span", { className: "params", textContent: `cfg ${params.cfg} · k ${params.top_k} · p ${params.top_p}` })));
  card.addEventListener("click", () => {
    applyParams(reuse);
    $("auto-seed").checked = false;
    const drawn = params.class == null ? " (class drawn at random again: the seed draws the same one)" : "";
    setStatus(params.edit
      ? `Settings of ${im.class_name} · seed ${im.seed} restored, without the edit it came from (its source image and box are not kept).`
      : `Settings of ${im.class_name} · seed ${im.seed} restored${drawn}; press Generate to sample it again.`);
  });
  const edit = el("button", { type: "button", className: "edit-this", textContent: "Edit", title: "Edit this image: drag a box over it in the Edit panel" });
  edit.addEventListener("click", () => setEditSource(`data:image/png;base64,${im.png}`, `${im.class_name} · seed ${im.seed}`));
  gallery.prepend(el("div", { className: "card-wrap" }, card, edit));
  while (gallery.children.length > MAX_GALLERY) gallery.lastChild.remove();
}

// ---------- streaming a generation ----------

async function* readEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function generate() {
  if (state.running || !state.model) return;
  if (state.edit && !state.edit.box) {
    setStatus("Drag a box over the image to edit (or press Clear to generate from scratch).", true);
    return;
  }
  const params = readParams();
  const controller = new AbortController();
  state.running = controller;
  $("generate").disabled = true;
  $("stop").disabled = false;
  setStatus("Queued…");
  $("run-info").textContent = "";
  const t0 = performance.now();
  let rows = null;
  let finished = false;
  try {
    const res = await fetch("/v1/generate/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(params),
      signal: controller.signal,
    });
    if (!res.ok) {
      let message = `HTTP ${res.status}`;
      try { message = (await res.json()).error || message; } catch { /* not JSON */ }
      if (res.status === 429) message += " (the queue is full; try again in a moment)";
      throw new Error(message);
    }
    for await (const { event, data } of readEvents(res.body)) {
      if (event === "start") {
        rows = buildPyramid(data);
        const e = data.params.edit;
        const editInfo = e ? ` · ${e.outpaint ? "out" : "in"}-painting ${e.box.join(",")}` : "";
        $("run-info").textContent = `${data.params.class_name ?? "random class"} · seed ${data.params.seed} · cfg ${data.params.cfg} · top-k ${data.params.top_k} · top-p ${data.params.top_p}${editInfo}`;
        setStatus("Sampling…");
      } else if (event === "scale") {
        showScale(rows, data);
        setStatus(`Scale ${data.index + 1} of ${data.num_scales} (${data.patch_size}×${data.patch_size} tokens)`);
      } else if (event === "done") {
        showDone(rows, data);
        const ms = Math.round(performance.now() - t0);
        const t = data.timing;
        setStatus(`Done in ${ms} ms (queued ${Math.round(t.queued_ms)} ms, sampled ${Math.round(t.sample_ms)} ms in a batch of ${t.batch_images}).`);
        if ($("auto-seed").checked) newSeed();
        finished = true;
      } else if (event === "error") {
        throw new Error(data.error);
      }
    }
    if (!finished) throw new Error("The stream ended before the images were done (the connection was cut); try again.");
  } catch (e) {
    if (e.name === "AbortError") setStatus("Stopped.");
    else setStatus(e.message, true);
  } finally {
    state.running = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
    refreshHealth();
  }
}

// ---------- wiring ----------

document.addEventListener("DOMContentLoaded", () => {
  $("generate").disabled = true;
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => state.running?.abort());
  $("dice").addEventListener("click", newSeed);
  $("cfg").addEventListener("input", syncOutputs);
  $("top-p").addEventListener("input", syncOutputs);
  $("model").addEventListener("change", (e) => selectModel(e.target.value));
  $("edit-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => setEditSource(reader.result, file.name);
    reader.readAsDataURL(file);
  });
  $("edit-clear").addEventListener("click", () => {
    clearEdit();
    setStatus("Editing cleared: Generate samples new images again.");
  });
  $("edit-outpaint").addEventListener("change", drawEdit);
  wireEditCanvas();
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate();
  });
  newSeed();
  loadModels();
});
