// The dossier panel of the open conversation's project: characters, themes, locations and plot points,
// updated live on `dossier.updated` and editable with optimistic locking (PUT with the version the edit
// started from). When someone else saved first the API answers 409: the panel then shows what the dossier
// holds now beside the user's own edit, still editable, and lets them save it over the new version or drop it.

import { ApiError } from "./api.js";
import { ago, fullTime, h, plainError, show } from "./ui.js";

const LIST_SECTIONS = [
  ["themes", "Themes", "Themes (one per line)", "e.g. trust"],
  ["locations", "Locations", "Locations (one per line)", "e.g. the Glass Citadel"],
  ["plot_points", "Plot points", "Plot points (one per line, in story order)", "e.g. The map is stolen."],
];

const lines = (text) =>
  text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);

const emptySnapshot = () => ({ characters: [], themes: [], locations: [], plot_points: [] });

export class DossierPanel {
  constructor({ api, body, version, notice, onChange }) {
    this.api = api;
    this.body = body;
    this.versionLabel = version;
    this.notice = notice;
    this.onChange = onChange; // (news: boolean) => void — a new version arrived while the panel was closed
    this.projectId = null;
    this.dossier = null; // the latest version known: {version, title, snapshot_json, updated_at, …}
    this.mode = "none"; // none | loading | empty | view | edit | conflict | error
    this.base = null; // version the edit started from (null: creating the dossier)
    this.draft = null; // {title, snapshot} while editing
    this.loadToken = 0;
    this.render();
  }

  /** Follow another project (or none). */
  setProject(projectId) {
    if (projectId === this.projectId) return;
    this.projectId = projectId;
    this.dossier = null;
    this.draft = null;
    this.base = null;
    this.say("");
    if (projectId) this.load();
    else this.setMode("none");
  }

  async load({ quiet = false } = {}) {
    const project = this.projectId;
    const token = ++this.loadToken;
    if (!quiet) this.setMode("loading");
    try {
      const dossier = await this.api(`/api/dossiers/${project}`);
      if (token !== this.loadToken || project !== this.projectId) return null;
      this.dossier = dossier;
      if (this.mode !== "edit" && this.mode !== "conflict") this.setMode("view");
      else this.renderVersion();
      return dossier;
    } catch (error) {
      if (token !== this.loadToken || project !== this.projectId) return null;
      if (error instanceof ApiError && error.status === 404) {
        this.dossier = null;
        if (this.mode !== "edit" && this.mode !== "conflict") this.setMode("empty");
        return null;
      }
      this.error = error;
      if (this.mode !== "edit" && this.mode !== "conflict") this.setMode("error");
      return null;
    }
  }

  /** A `dossier.updated` frame. */
  async updated(frame) {
    if (frame.project_id !== this.projectId) return;
    if (this.dossier && frame.version <= this.dossier.version) return; // our own save, or old news
    if (this.mode === "edit" || this.mode === "conflict") {
      await this.load({ quiet: true });
      this.say(
        `Version ${frame.version} arrived while you were editing. Your text stays as it is; ` +
          "saving will show you both.",
      );
      this.onChange?.(true);
      return;
    }
    await this.load({ quiet: true });
    this.say(`Updated to version ${frame.version}.`);
    this.onChange?.(true);
  }

  say(text) {
    this.notice.textContent = text;
    show(this.notice, Boolean(text));
  }

  setMode(mode) {
    this.mode = mode;
    this.render();
  }

  renderVersion() {
    const d = this.dossier;
    this.versionLabel.textContent = d ? `v${d.version}` : "";
    this.versionLabel.title = d ? `Updated ${fullTime(d.updated_at)}` : "";
  }

  render() {
    this.renderVersion();
    const body = this.body;
    body.replaceChildren();
    body.dataset.mode = this.mode;
    switch (this.mode) {
      case "none":
        body.append(h("p", { class: "empty-state" }, "Start a conversation: its story is collected here."));
        break;
      case "loading":
        body.append(h("p", { class: "empty-state", "aria-busy": "true" }, "Opening the dossier…"));
        break;
      case "empty":
        body.append(
          h(
            "div",
            { class: "empty-state" },
            h("p", {}, "No dossier yet."),
            h(
              "p",
              { class: "fine-print" },
              "As the story grows, its characters, places, themes and plot points are collected here. " +
                "You can also start it yourself.",
            ),
            h("button", { type: "button", class: "button small", onclick: () => this.edit() }, "Start the dossier"),
          ),
        );
        break;
      case "error":
        body.append(
          h("p", { class: "form-error", role: "alert" }, plainError(this.error?.code, this.error?.message)),
          h("button", { type: "button", class: "button small", onclick: () => this.load() }, "Try again"),
        );
        break;
      case "view":
        body.append(this.view(this.dossier), this.viewActions());
        break;
      case "edit":
        body.append(this.form());
        break;
      case "conflict":
        body.append(this.conflict());
        break;
    }
  }

  view(dossier) {
    const s = dossier.snapshot_json ?? emptySnapshot();
    const none = () => h("p", { class: "fine-print" }, "None yet.");
    const section = (title, content) =>
      h("section", { class: "d-section" }, h("h3", { class: "d-heading" }, title), content);
    return h(
      "article",
      { class: "d-view", "aria-label": `Dossier, version ${dossier.version}` },
      h("p", { class: "d-title" }, dossier.title || "Untitled story"),
      h("p", { class: "fine-print" }, `Version ${dossier.version} · updated ${ago(dossier.updated_at)}`),
      section(
        "Characters",
        s.characters.length
          ? h(
              "ul",
              { class: "d-characters" },
              s.characters.map((c) =>
                h(
                  "li",
                  {},
                  h("p", { class: "d-name" }, c.name),
                  c.description && h("p", {}, c.description),
                  c.relationships?.length ? h("p", { class: "d-rel" }, c.relationships.join(" · ")) : null,
                  c.character_arc && h("p", { class: "d-arc" }, `Arc: ${c.character_arc}`),
                ),
              ),
            )
          : none(),
      ),
      section("Themes", s.themes.length ? h("ul", { class: "chips" }, s.themes.map((t) => h("li", {}, t))) : none()),
      section("Locations", s.locations.length ? h("ul", { class: "d-list" }, s.locations.map((t) => h("li", {}, t))) : none()),
      section(
        "Plot points",
        s.plot_points.length ? h("ol", { class: "d-list" }, s.plot_points.map((t) => h("li", {}, t))) : none(),
      ),
    );
  }

  viewActions() {
    return h(
      "div",
      { class: "row" },
      h("button", { type: "button", class: "button small", onclick: () => this.edit() }, "Edit"),
    );
  }

  /** Open the editor on the latest version (or on an empty dossier when there is none). */
  edit() {
    this.base = this.dossier ? this.dossier.version : null;
    this.draft = {
      title: this.dossier?.title ?? "",
      snapshot: structuredClone(this.dossier?.snapshot_json ?? emptySnapshot()),
    };
    this.say("");
    this.setMode("edit");
    this.body.querySelector("input, textarea")?.focus();
  }

  form() {
    const draft = this.draft;
    const characters = h("div", { class: "d-characters-edit" });
    const addCharacter = (c = { name: "", description: "", relationships: [], character_arc: "" }) => {
      const n = characters.children.length + 1;
      const id = `dc-${n}-${Math.random().toString(36).slice(2, 7)}`;
      const set = h(
        "fieldset",
        { class: "d-character" },
        h("legend", {}, `Character ${n}`),
        field(`${id}-name`, "Name", h("input", { id: `${id}-name`, name: "name", value: c.name, maxlength: 200 })),
        field(`${id}-desc`, "Description", textarea(`${id}-desc`, "description", c.description, 3)),
        field(
          `${id}-rel`,
          "Relationships (one per line)",
          textarea(`${id}-rel`, "relationships", (c.relationships ?? []).join("\n"), 2),
        ),
        field(`${id}-arc`, "Arc", textarea(`${id}-arc`, "character_arc", c.character_arc, 2)),
        h(
          "button",
          {
            type: "button",
            class: "button small ghost",
            onclick: () => {
              set.remove();
              [...characters.querySelectorAll("legend")].forEach((legend, i) => {
                legend.textContent = `Character ${i + 1}`;
              });
            },
          },
          "Remove this character",
        ),
      );
      characters.append(set);
      return set;
    };
    draft.snapshot.characters.forEach((c) => addCharacter(c));

    const form = h(
      "form",
      { class: "d-form", novalidate: true, "aria-label": "Edit the dossier" },
      field("d-title", "Story title", h("input", { id: "d-title", name: "title", value: draft.title, maxlength: 200 })),
      h(
        "fieldset",
        { class: "d-group" },
        h("legend", {}, "Characters"),
        characters,
        h(
          "button",
          {
            type: "button",
            class: "button small",
            onclick: () => addCharacter().querySelector("input").focus(),
          },
          "Add a character",
        ),
      ),
      LIST_SECTIONS.map(([key, , label, example]) =>
        field(`d-${key}`, label, textarea(`d-${key}`, key, draft.snapshot[key].join("\n"), 3, example)),
      ),
      h("p", { class: "form-error", role: "alert", id: "d-form-error" }),
      h(
        "div",
        { class: "row" },
        h(
          "button",
          { type: "submit", class: "button primary small" },
          this.mode === "conflict" ? `Save mine as the new version` : "Save",
        ),
        this.mode === "conflict"
          ? null
          : h("button", { type: "button", class: "button ghost small", onclick: () => this.cancel() }, "Cancel"),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save(form);
    });
    this.formEl = form;
    return form;
  }

  /** The draft as the form holds it now. */
  readForm(form) {
    const characters = [...form.querySelectorAll(".d-character")].map((set) => ({
      name: set.querySelector("[name=name]").value.trim(),
      description: set.querySelector("[name=description]").value.trim(),
      relationships: lines(set.querySelector("[name=relationships]").value),
      character_arc: set.querySelector("[name=character_arc]").value.trim(),
    }));
    const snapshot = { characters };
    for (const [key] of LIST_SECTIONS) snapshot[key] = lines(form.querySelector(`[name=${key}]`).value);
    return { title: form.querySelector("[name=title]").value.trim(), snapshot };
  }

  cancel() {
    this.draft = null;
    this.base = null;
    this.say("");
    this.setMode(this.dossier ? "view" : "empty");
  }

  async save(form) {
    const draft = this.readForm(form);
    this.draft = draft;
    const problem = form.querySelector("#d-form-error");
    const unnamed = draft.snapshot.characters.some((c) => !c.name && (c.description || c.character_arc));
    if (unnamed) {
      problem.textContent = "Every character needs a name.";
      return;
    }
    draft.snapshot.characters = draft.snapshot.characters.filter((c) => c.name);
    const payload = { snapshot_json: draft.snapshot, title: draft.title };
    const buttons = [...form.querySelectorAll("button")];
    buttons.forEach((b) => {
      b.disabled = true;
    });
    problem.textContent = "";
    try {
      const saved =
        this.base === null
          ? await this.api(`/api/dossiers/${this.projectId}`, { method: "POST", body: payload })
          : await this.api(`/api/dossiers/${this.projectId}`, {
              method: "PUT",
              body: { ...payload, version: this.base },
            });
      this.dossier = saved;
      this.draft = null;
      this.base = null;
      this.setMode("view");
      this.say(`Saved as version ${saved.version}.`);
    } catch (error) {
      buttons.forEach((b) => {
        b.disabled = false;
      });
      if (error instanceof ApiError && error.status === 409) {
        await this.load({ quiet: true });
        this.setMode("conflict");
        return;
      }
      if (error instanceof ApiError && error.status === 404 && this.base !== null) {
        // Deleted meanwhile: saving again starts it anew with this text.
        this.dossier = null;
        this.base = null;
        problem.textContent = "This dossier was deleted meanwhile. Save again to start it anew with your text.";
        return;
      }
      const fields = error?.body?.error?.fields;
      const details = Array.isArray(fields) && fields.length ? ` (${fields.map((f) => f.msg || f).join("; ")})` : "";
      problem.textContent = plainError(error.code, error.message, error.retryAfter) + details;
    }
  }

  conflict() {
    const current = this.dossier;
    const started = this.base;
    const explanation = current
      ? `While you were editing, the dossier changed: it is at version ${current.version} now` +
        (started ? `, you started from version ${started}` : "") +
        ". The story's extraction or another of your devices saved first, so your edit was not saved — " +
        "and nothing of it is lost. Compare both below, then save yours over the new version or keep the new one."
      : "While you were editing, the dossier was started elsewhere. Your edit was not saved and nothing of it is lost.";
    this.base = current ? current.version : null;
    const wrapper = h(
      "div",
      { class: "d-conflict" },
      h("div", { class: "conflict-explained", role: "alert" }, h("p", { class: "d-conflict-title" }, "Someone saved first"), h("p", {}, explanation)),
      current
        ? h(
            "section",
            { class: "d-theirs", "aria-label": `Now in the dossier (version ${current.version})` },
            h("h3", { class: "d-heading" }, `Now in the dossier · version ${current.version}`),
            this.view(current),
          )
        : null,
      h(
        "section",
        { class: "d-mine", "aria-label": "Your edit" },
        h("h3", { class: "d-heading" }, "Your edit"),
        this.form(),
      ),
      h(
        "div",
        { class: "row" },
        h(
          "button",
          {
            type: "button",
            class: "button ghost small",
            onclick: () => this.cancel(),
          },
          current ? `Discard mine, keep version ${current.version}` : "Discard mine",
        ),
      ),
    );
    return wrapper;
  }
}

function field(id, label, control) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

function textarea(id, name, value, rows, placeholder) {
  const el = h("textarea", { id, name, rows, placeholder });
  el.value = value ?? "";
  return el;
}
