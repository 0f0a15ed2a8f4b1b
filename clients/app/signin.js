// The sign-in step (index.html): takes a JWT (and its tenant, read from the token when not
// given) into sessionStorage for the other screens; under `tablewire dev` the edge serves
// `/app/dev.json` (`{"token", "tenant"}`) and a button offers that token. `?next=` is where to
// go after signing in.
import { devCredentialsUrl, saveSession, session, tenantOf } from "./common.js";

const form = document.getElementById("signin");
const tokenInput = document.getElementById("token");
const tenantInput = document.getElementById("tenant");
const who = document.getElementById("who");

function show() {
  const { token, tenant } = session();
  who.textContent = token ? `Signed in for tenant “${tenant || "?"}”.` : "Not signed in (rooms and displays work without a token).";
}

function signIn(token, tenant) {
  saveSession(token, tenant || tenantOf(token));
  show();
  const next = new URLSearchParams(location.search).get("next");
  if (next && next.startsWith("/") && !next.startsWith("//")) location.href = next; // same origin only
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(tokenInput.value.trim(), tenantInput.value.trim());
});

tokenInput.addEventListener("input", () => {
  if (!tenantInput.value) tenantInput.placeholder = tenantOf(tokenInput.value.trim());
});

const dev = document.getElementById("dev");
fetch(devCredentialsUrl)
  .then((response) => (response.ok ? response.json() : undefined))
  .then((credentials) => {
    if (!credentials?.token) return;
    dev.hidden = false;
    dev.addEventListener("click", () => signIn(credentials.token, credentials.tenant));
  })
  .catch(() => {});

const current = session();
tokenInput.value = current.token;
tenantInput.value = current.tenant;
show();
