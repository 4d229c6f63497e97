"use strict";
// What the two pages share: calls to this server (same origin), the API token of this tab, and
// the retry of busy answers (503 with Retry-After).
const TOKEN_KEY = "ocr-serve-token";
const MAX_BUSY_RETRIES = 20;
// The API's root is where the page was loaded: "/" for /ui (and /profiles/new), "/r/<key>/" (a reader
// profile's) for /r/<key>/ui.
const API_ROOT = location.pathname.replace(/\/(ui(\/[^/]*)?|profiles\/new)$/, "/");

function apiToken() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
function setApiToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One call to `path` of the API ("/set_lang/", under API_ROOT); a 503 is retried after its Retry-After,
// `onWait(seconds, attempt, message)` says so.
async function api(method, path, body, onWait) {
  const headers = { Accept: "application/json" };
  if (apiToken()) headers.Authorization = "Bearer " + apiToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(API_ROOT + path.replace(/^\//, ""), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin",
      cache: "no-store" });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.ok) return data;
    const message = (data && data.error) || `The server answered ${response.status}.`;
    if (response.status === 503 && attempt <= MAX_BUSY_RETRIES) {
      const seconds = Math.max(1, parseInt(response.headers.get("Retry-After") || "1", 10) || 1);
      if (onWait) onWait(seconds, attempt, message);
      await sleep(seconds * 1000);
      continue;
    }
    throw new ApiError(response.status, message);
  }
}

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}
