// Requests to meetrd's API with the token typed into the page, kept in
// sessionStorage (this tab only).  Every answer that is not a success
// becomes an ApiError whose message says what to do.

const TOKEN_KEY = "meetr.token";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
}

function explain(status, body) {
  const said = body && body.error ? body.error : "";
  if (status === 401) {
    return token()
      ? `The API refused the token (401${said ? ": " + said : ""}). ` +
        "Type a valid token in \u201cAPI token\u201d above."
      : "The API needs a token (401). Type it in \u201cAPI token\u201d above.";
  }
  if (status === 403) {
    return `The token lacks the role this needs (403${said ? ": " + said : ""}).`;
  }
  if (status === 503) {
    return `meetrd cannot answer right now (503${said ? ": " + said : ""}); ` +
      "it will be tried again.";
  }
  if (body && body.field) {
    return `${said || "Bad request"} (${status}, field \u201c${body.field}\u201d)`;
  }
  return said ? `${said} (${status})` : `The API answered ${status}.`;
}

// A request; resolves with the JSON body of a 2xx answer.
export async function request(method, path, { params, form } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) {
    headers.Authorization = `Bearer ${bearer}`;
  }
  let url = path;
  if (params) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      for (const one of Array.isArray(value) ? value : [value]) {
        if (one !== undefined && one !== null && one !== "") {
          query.append(name, one);
        }
      }
    }
    const text = query.toString();
    if (text) {
      url += "?" + text;
    }
  }
  let body;
  if (form) {
    body = new URLSearchParams();
    for (const [name, value] of form) {
      body.append(name, value);
    }
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, `meetrd cannot be reached (${error.message}).`, null);
  }
  let parsed = null;
  const type = response.headers.get("content-type") || "";
  if (type.startsWith("application/json")) {
    parsed = await response.json();
  }
  if (!response.ok) {
    throw new ApiError(response.status, explain(response.status, parsed), parsed);
  }
  return parsed;
}

export const get = (path, params) => request("GET", path, { params });
export const postForm = (path, form) => request("POST", path, { form });
