// The console's entry: the views behind the hash (#/targets,
// #/explore?..., #/fetch), the token form and the message bar.

import { setToken, token } from "./api.js";
import { TargetsView } from "./targets.js";
import { ExploreView } from "./explore.js";
import { FetchView } from "./fetchjob.js";

const alertBar = document.getElementById("alert");

// One message for the whole page: problems of the API (401 above all)
// are shown here, whichever view asked.
export const notices = {
  show(message, kind = "error") {
    alertBar.textContent = message;
    alertBar.dataset.kind = kind;
    alertBar.hidden = false;
  },
  clear() {
    alertBar.hidden = true;
    alertBar.textContent = "";
  },
};

const views = {
  targets: new TargetsView(notices),
  explore: new ExploreView(notices),
  fetch: new FetchView(notices),
};
let current = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, query = ""] = hash.split("?", 2);
  const next = views[name] ? name : "targets";
  if (current && current !== next) {
    views[current].hide();
  }
  for (const [key, view] of Object.entries(views)) {
    view.section.hidden = key !== next;
  }
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    if (link.dataset.view === next) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  document.title = `meetrd \u00b7 ${next[0].toUpperCase()}${next.slice(1)}`;
  notices.clear();
  current = next;
  views[next].show(new URLSearchParams(query));
}

const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token");
const tokenState = document.getElementById("token-state");

function showTokenState() {
  tokenState.textContent = token() ? "token set for this tab" : "no token";
  tokenInput.value = "";
  tokenInput.placeholder = token() ? "\u2022\u2022\u2022\u2022\u2022\u2022" : "not set";
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(tokenInput.value.trim());
  showTokenState();
  route();
});
document.getElementById("token-forget").addEventListener("click", () => {
  setToken("");
  showTokenState();
  route();
});

window.addEventListener("hashchange", route);
showTokenState();
route();
