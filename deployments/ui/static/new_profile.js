"use strict";
// The self-service page (/profiles/new): a name in, POST /profiles/new, the address to paste into the
// extension: this server's address as the browser reached it, and the new profile's path.
const $ = (id) => document.getElementById(id);

function say(text, kind) {
  $("state").textContent = text;
  $("state").className = kind || "";
}

async function make() {
  $("make").disabled = true;
  try {
    const made = await api("POST", "/profiles/new", { name: $("name").value.trim() });
    const address = location.origin + made.path;
    $("address").value = address;
    $("open-ui").href = address + "/ui";
    $("made").hidden = false;
    say(`Profile '${made.name}' made. Paste its address into the extension as the server; it is shown this once.`);
  } catch (error) {
    say(error instanceof ApiError ? error.message : `The server could not be reached: ${error.message}`, "error");
  } finally {
    $("make").disabled = false;
  }
}

$("make").addEventListener("click", make);
