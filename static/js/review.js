// Keyboard review, for the queue and flow review pages (no inline JS: CSP).
//   j / k     next / previous item (or queue row)
//   a         accept the selected item
//   c         correct it: focuses the value, Enter saves
//   r         reject it: focuses the reason, Enter saves
//   Esc       leave a field, back to moving between items
//   n         flow page: choose the outcome (Enter closes and opens the next flow);
//             queue page: start with the first flow nobody holds
//   s         skip this flow (release it) and open the next one
//   Enter     queue page: open the selected row
// Decisions are htmx forms; a refused decision (409) is swapped in like a success, so the
// agent reads why.
(() => {
  "use strict";

  const viewer = document.getElementById("viewer");
  let currentId = null;

  const selectables = () => Array.from(document.querySelectorAll("[data-item], [data-row]"));
  const selected = () => document.querySelector("[data-item].selected, [data-row].selected");
  const typing = (el) => !!el && (el.matches("input, textarea, select") || el.isContentEditable);

  function showDocuments(el) {
    if (!viewer) return;
    const ids = (el.dataset.docs || "").split(" ").filter(Boolean);
    viewer.querySelectorAll("[data-doc]").forEach((doc) => {
      doc.classList.toggle("current", ids.includes(doc.dataset.doc));
    });
    const first = ids.length ? document.getElementById("doc-" + ids[0]) : null;
    if (first) viewer.scrollTo({ top: first.offsetTop - viewer.firstElementChild.offsetTop });
  }

  function select(el) {
    const before = selected();
    if (before) before.classList.remove("selected");
    if (!el) return;
    el.classList.add("selected");
    if (el.dataset.item) {
      currentId = el.dataset.item;
      showDocuments(el);
      el.focus({ preventScroll: true });
    }
    el.scrollIntoView({ block: "nearest" });
  }

  function move(delta) {
    const all = selectables();
    if (!all.length) return;
    const at = all.indexOf(selected());
    const next = at < 0 ? (delta > 0 ? 0 : all.length - 1) : Math.min(Math.max(at + delta, 0), all.length - 1);
    select(all[next]);
  }

  function nextOpenAfter(el) {
    const open = Array.from(document.querySelectorAll("[data-item].status-open"));
    if (!open.length) return null;
    const all = selectables();
    const at = all.indexOf(el);
    return open.find((item) => all.indexOf(item) > at) || open[0];
  }

  function current() {
    const el = selected();
    if (el) return el;
    move(1);
    return selected();
  }

  function focusInput(name) {
    const el = current();
    const input = el && el.querySelector(`[data-input="${name}"]`);
    if (!input) return;
    input.focus();
    if (input.select && input.tagName === "INPUT") input.select();
  }

  function outcomeOrNext() {
    const outcome = document.querySelector('#close-form [data-input="outcome"]');
    if (outcome) {
      outcome.focus();
      outcome.scrollIntoView({ block: "center" });
      return;
    }
    const start = document.querySelector('[data-key="n"]');
    if (start) {
      start.click();
      return;
    }
    // Items still undecided: go to the first one; the close panel says how many remain.
    const open = document.querySelector("[data-item].status-open");
    if (open) select(open);
    const panel = document.getElementById("close-panel");
    if (panel) panel.classList.add("nudge");
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") {
        target.blur();
        const item = target.closest("[data-item]");
        if (item) select(item);
      } else if (event.key === "Enter" && target.tagName === "SELECT") {
        // A select does not submit its form on Enter by itself.
        event.preventDefault();
        target.form.requestSubmit();
      }
      return;
    }
    const row = selected();
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "a": {
        const button = current() && current().querySelector('[data-action="accept"]');
        if (button) button.click();
        break;
      }
      case "c": focusInput("correct"); break;
      case "r": focusInput("reject"); break;
      case "n": outcomeOrNext(); break;
      case "s": {
        const skip = document.querySelector("#skip-form button");
        if (skip) skip.click();
        break;
      }
      case "Enter":
      case "o":
        if (row && row.dataset.href) window.location.assign(row.dataset.href);
        else return;
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  // A refused decision (another agent was first, the claim was lost) comes back as 409 with
  // the item redrawn and the reason in it: show it rather than treating it as an error.
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    if (status === 409 || status === 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // After a decision the item is redrawn: move on to the next undecided item, or stay on a
  // refused one so its message is read.
  document.body.addEventListener("htmx:afterSettle", (event) => {
    const el = event.target;
    if (!el || !el.dataset || !el.dataset.item || el.dataset.item !== currentId) return;
    if (el.classList.contains("refused") || !el.classList.contains("decided")) {
      select(el);
      return;
    }
    const next = nextOpenAfter(el);
    if (next) select(next);
    else {
      select(el);
      const panel = document.getElementById("close-panel");
      if (panel) panel.scrollIntoView({ block: "nearest" });
    }
  });

  // Clicking an item selects it too, so mouse and keyboard agree.
  document.addEventListener("click", (event) => {
    const el = event.target.closest("[data-item]");
    if (el && el !== selected()) select(el);
  });

  const first = document.querySelector("[data-item].status-open") || document.querySelector("[data-item]");
  if (first) select(first);
})();
