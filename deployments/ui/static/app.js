"use strict";
// The try-it page: an image in, POST /run_ocrtsl/ with this page's languages and models (per request
// overrides: the selection stays as it is, unless the reader keeps the languages), the blocks drawn over
// the image. Its calls go to the API where the page was loaded (common.js API_ROOT).
const $ = (id) => document.getElementById(id);
const SENT_AS_IS = ["image/png", "image/jpeg", "image/gif"];
const DOWNLOAD_RETRY_S = 5;
const page = { image: null, contents: null, name: "image", result: null, translated: true, selection: null,
               languageNames: {} };

function say(text, kind) {
  const state = $("state");
  state.textContent = text;
  state.className = kind || "";
}

function fillSelect(select, codes, names, chosen) {
  select.replaceChildren(...codes.map((code) => {
    const option = element("option", { value: code }, `${names[code] || code} (${code})`);
    option.selected = code === chosen;
    return option;
  }));
}

function fillModels(kind, ids, chosen) {
  $(kind + "_models").replaceChildren(...ids.map((id) => element("option", { value: id })));
  $(kind + "_model_id").value = chosen || ids[0] || "";
}

async function loadHandshake() {
  const hand = await api("GET", "/", undefined, busy);
  const names = Object.fromEntries(hand.Languages.map((code, i) => [code, hand.Languages_hr[i]]));
  fillSelect($("lang_src"), hand.Languages_src, names, hand.lang_src);
  fillSelect($("lang_dst"), hand.Languages_dst, names, hand.lang_dst);
  page.languageNames = names;
  fillModels("box", hand.BOXModels, hand.box_selected);
  fillModels("ocr", hand.OCRModels, hand.ocr_selected);
  fillModels("tsl", hand.TSLModels, hand.tsl_selected);
  page.selection = hand;
}

function busy(seconds, attempt, message) {
  say(`${message} The server is busy: retrying in ${seconds} s (attempt ${attempt}).`, "wait");
}

// -- the image --------------------------------------------------------------------------------------
function readAs(blob, how) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader[how](blob);
  });
}

async function takeImage(blob, name) {
  if (!blob || !blob.type.startsWith("image/")) { say("That is not an image file.", "error"); return; }
  const url = URL.createObjectURL(blob);
  const image = new Image();
  try {
    await new Promise((resolve, reject) => { image.onload = resolve; image.onerror = reject; image.src = url; });
  } catch (_) { say("This browser cannot read that image.", "error"); return; }
  let dataUrl;
  if (SENT_AS_IS.includes(blob.type)) dataUrl = await readAs(blob, "readAsDataURL");
  else {  // the extension's way: a PNG of the decoded image
    const canvas = element("canvas", { width: image.naturalWidth, height: image.naturalHeight });
    canvas.getContext("2d").drawImage(image, 0, 0);
    dataUrl = canvas.toDataURL("image/png");
  }
  Object.assign(page, { image, contents: dataUrl.slice(dataUrl.indexOf(",") + 1), name: name || "image",
                        result: null });
  $("run").disabled = false;
  render();
  say(`Image ready (${image.naturalWidth}×${image.naturalHeight}). Choose the languages and models, then run.`);
}

// -- running ----------------------------------------------------------------------------------------
function requestBody() {
  const body = { contents: page.contents, force: $("force").checked };
  for (const key of ["lang_src", "lang_dst", "box_model_id", "ocr_model_id", "tsl_model_id"]) {
    const value = $(key).value.trim();
    if (value) body[key] = value;
  }
  return body;
}

function explain(error) {
  if (error.status === 401) {
    $("token-box").open = true;
    $("token").focus();
    return `${error.message} Enter the token under "API token" and try again.`;
  }
  if (error.status === 512) return `Languages not selected: ${error.message}`;
  if (error.status === 513) return `Models not ready: ${error.message}`;
  return `Error [${error.status}]: ${error.message}`;
}

async function run() {
  $("run").disabled = true;
  say("Reading and translating…", "wait");
  try {
    for (;;) {
      try {
        const answer = await api("POST", "/run_ocrtsl/", requestBody(), busy);
        page.result = answer.result;
        break;
      } catch (error) {
        // 513 while a model's weights download: wait for them, and say so
        if (!(error instanceof ApiError) || error.status !== 513 || !/download/i.test(error.message)) throw error;
        say(`The models are loading: ${error.message} Trying again in ${DOWNLOAD_RETRY_S} s.`, "wait");
        await sleep(DOWNLOAD_RETRY_S * 1000);
      }
    }
    page.translated = true;
    render();
    say(`${page.result.length} text block${page.result.length === 1 ? "" : "s"} found.`);
  } catch (error) {
    say(error instanceof ApiError ? explain(error) : `The server could not be reached: ${error.message}`, "error");
  } finally {
    $("run").disabled = false;
  }
}

// Makes the chosen languages the selection of this page's address (a reader profile's under /r/<key>/ui),
// and offers that selection's models.
async function keepLanguages() {
  const [src, dst] = [$("lang_src").value, $("lang_dst").value];
  try {
    await api("POST", "/set_lang/", { lang_src: src, lang_dst: dst }, busy);
    await loadHandshake();
    say(`Languages kept: ${src} -> ${dst} is now this address's selection.`);
  } catch (error) {
    say(error instanceof ApiError ? explain(error) : error.message, "error");
  }
}

// -- drawing ----------------------------------------------------------------------------------------
function wrap(context, text, width) {
  const lines = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(/\s+/).filter(Boolean)) {
      const longer = line ? line + " " + word : word;
      if (line && context.measureText(longer).width > width) { lines.push(line); line = word; } else line = longer;
    }
    lines.push(line);
  }
  return lines;
}

// The largest font size whose wrapped lines fit the box.
function fitText(context, text, width, height) {
  for (let size = Math.min(64, Math.floor(height)); size > 6; size--) {
    context.font = `${size}px sans-serif`;
    const lines = wrap(context, text, width);
    const widest = Math.max(...lines.map((line) => context.measureText(line).width));
    if (lines.length * size * 1.15 <= height && widest <= width) return { size, lines };
  }
  context.font = "6px sans-serif";
  return { size: 6, lines: wrap(context, text, width) };
}

function draw() {
  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.drawImage(page.image, 0, 0);
  const accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim();
  for (const block of page.result || []) {
    const [l, b, r, t] = block.box;
    if (page.translated) {
      context.fillStyle = "rgba(255, 255, 255, 0.94)";
      context.fillRect(l, b, r - l, t - b);
      const pad = 2;
      const { size, lines } = fitText(context, block.tsl, r - l - 2 * pad, t - b - 2 * pad);
      context.fillStyle = "#000";
      context.textBaseline = "top";
      lines.forEach((line, i) => context.fillText(line, l + pad, b + pad + i * size * 1.15));
    }
    context.strokeStyle = accent;
    // two pixels on the screen, however much the image is scaled down to fit the page
    const shown = context.canvas.clientWidth;
    context.lineWidth = shown ? 2 * Math.max(1, context.canvas.width / shown) : 2;
    context.strokeRect(l, b, r - l, t - b);
  }
}

function showTip(box, block) {
  const tip = $("tip");
  tip.textContent = page.translated ? block.ocr : block.tsl;
  tip.style.left = box.style.left;
  tip.style.top = `calc(${box.style.top} + ${box.style.height})`;
  tip.hidden = false;
}

function markCurrent(index) {
  document.querySelectorAll(".box, #blocks li").forEach((node) => {
    node.classList.toggle("current", Number(node.dataset.index) === index);
  });
}

function render() {
  const canvas = $("canvas");
  canvas.width = page.image.naturalWidth;
  canvas.height = page.image.naturalHeight;
  draw();
  const percent = (value, whole) => `${(100 * value / whole).toFixed(3)}%`;
  const [width, height] = [canvas.width, canvas.height];
  const result = page.result || [];
  $("overlay").replaceChildren(...result.map((block, index) => {
    const [l, b, r, t] = block.box;
    const box = element("div", { class: "box", tabindex: "0", role: "note", "data-index": index,
                                 "aria-label": `Block ${index + 1}: ${block.ocr}`, "data-tsl": block.tsl });
    Object.assign(box.style, { left: percent(l, width), top: percent(b, height),
                               width: percent(r - l, width), height: percent(t - b, height) });
    const show = () => { showTip(box, block); markCurrent(index); };
    const hide = () => { $("tip").hidden = true; };
    box.addEventListener("mouseenter", show);
    box.addEventListener("focus", show);
    box.addEventListener("mouseleave", hide);
    box.addEventListener("blur", hide);
    return box;
  }));
  $("blocks").replaceChildren(...result.map(blockItem));
  for (const id of ["toggle", "download-png", "download-json"]) $(id).disabled = !page.result;
  $("toggle").textContent = page.translated ? "Show original" : "Show translation";
  $("toggle").setAttribute("aria-pressed", String(page.translated));
}

// -- per block: the detected language, other translations, manual translation -----------------------
function detectedLanguage(block) {
  if (!("lang_src" in block)) return [];  // a source language was chosen: nothing was detected
  const text = block.lang_src === null ? "No language detected: shown as read"
    : `Detected: ${page.languageNames[block.lang_src] || block.lang_src}`;
  return [element("div", { class: "lang" }, text)];
}

function blockItem(block, index) {
  const others = element("ul", { class: "others" });
  const showOthers = element("button", { type: "button" }, "Other translations");
  showOthers.addEventListener("click", async () => {
    others.replaceChildren(element("li", {}, "…"));
    try {
      const answer = await api("GET", "/get_trans/?text=" + encodeURIComponent(block.ocr), undefined, busy);
      others.replaceChildren(...answer.translations.map((one) =>
        element("li", {}, element("b", {}, one.model), ": ", one.text)));
    } catch (error) {
      others.replaceChildren(element("li", { class: "bad" }, error instanceof ApiError ? explain(error) : error.message));
    }
  });
  const editor = element("div", { class: "editor", hidden: "" });
  const text = element("textarea", { rows: "3", "aria-label": `Your translation of block ${index + 1}` });
  text.value = block.tsl;
  const save = element("button", { type: "button" }, "Save translation");
  editor.append(text, save);
  const edit = element("button", { type: "button", "aria-expanded": "false" }, "Edit translation");
  edit.addEventListener("click", () => {
    editor.hidden = !editor.hidden;
    edit.setAttribute("aria-expanded", String(!editor.hidden));
    if (!editor.hidden) text.focus();
  });
  save.addEventListener("click", async () => {
    try {
      await api("POST", "/set_manual_translation/", { text: block.ocr, translation: text.value }, busy);
      block.tsl = text.value;
      render();
      say(`Saved your translation of block ${index + 1} (for the server's selected languages).`);
    } catch (error) {
      say(error instanceof ApiError ? explain(error) : error.message, "error");
    }
  });
  const item = element("li", { "data-index": index },
                       element("div", { class: "tsl" }, block.tsl), element("div", { class: "ocr" }, block.ocr),
                       ...detectedLanguage(block), showOthers, " ", edit, others, editor);
  item.addEventListener("mouseenter", () => markCurrent(index));
  return item;
}

// -- downloads --------------------------------------------------------------------------------------
function download(blob, name) {
  const link = element("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

const baseName = () => page.name.replace(/\.[^.]*$/, "");

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) takeImage(file, file.name);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file").click(); }
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) takeImage(file, file.name);
  });
  document.addEventListener("paste", (event) => {
    const item = [...event.clipboardData.items].find((one) => one.kind === "file" && one.type.startsWith("image/"));
    if (item) { event.preventDefault(); takeImage(item.getAsFile(), "pasted.png"); }
  });
  $("run").addEventListener("click", run);
  $("keep-langs").addEventListener("click", keepLanguages);
  $("toggle").addEventListener("click", () => { page.translated = !page.translated; render(); });
  $("download-png").addEventListener("click", () =>
    $("canvas").toBlob((blob) => download(blob, baseName() + ".translated.png"), "image/png"));
  $("download-json").addEventListener("click", () =>
    download(new Blob([JSON.stringify({ result: page.result }, null, 2)], { type: "application/json" }),
             baseName() + ".json"));
  $("token").value = apiToken();
  $("save-token").addEventListener("click", () => {
    setApiToken($("token").value.trim());
    say($("token").value.trim() ? "Token kept for this tab." : "Token removed.");
  });
}

wire();
loadHandshake().catch((error) => say(`Could not read the server's languages and models: ${error.message}`, "error"));
