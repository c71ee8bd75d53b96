// How times, durations and numbers are written on the page.

export function utc(date) {
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function ago(iso, now = Date.now()) {
  if (!iso) {
    return "never";
  }
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (seconds < 0) {
    return `in ${duration(-seconds)}`;
  }
  return `${duration(seconds)} ago`;
}

export function duration(seconds) {
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 120) {
    return `${Math.round(seconds)} s`;
  }
  if (seconds < 7200) {
    return `${Math.round(seconds / 60)} min`;
  }
  if (seconds < 172800) {
    return `${Math.round(seconds / 3600)} h`;
  }
  return `${Math.round(seconds / 86400)} d`;
}

export function number(value) {
  if (value === null || value === undefined) {
    return "\u2013";
  }
  if (Number.isInteger(value)) {
    return value.toLocaleString("en");
  }
  return Number(value.toPrecision(6)).toLocaleString("en", {
    maximumFractionDigits: 6,
  });
}

// The elements whose ids are `${prefix}-${id}`, by property: `names` lists
// ids that are their properties' names too, or maps properties to ids.
export function parts(prefix, names) {
  const pairs = Array.isArray(names)
    ? names.map((name) => [name, name]) : Object.entries(names);
  return Object.fromEntries(pairs.map(([property, id]) =>
    [property, document.getElementById(`${prefix}-${id}`)]));
}

// Creates an element with text and attributes.
export function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) {
    node.textContent = text;
  }
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  return node;
}
