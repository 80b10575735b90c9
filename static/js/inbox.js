/* Conversa inbox: live updates, composer, history paging. Plain JavaScript, no build step.
 *
 * Rendering stays on the server: when an event arrives, the page asks for the affected chat row or
 * message by id and puts the returned HTML in place. Events come over one WebSocket (/ws/inbox/,
 * the organization's room, which carries every chat's events); pushes are at most once, so after
 * every (re)connect the page asks GET /events/?after=<cursor> for whatever it missed.
 */
(function () {
  "use strict";

  const root = document.getElementById("inbox");
  if (!root) return;

  const strings = JSON.parse(document.getElementById("inbox-strings").textContent);
  let openChat = root.dataset.chat ? Number(root.dataset.chat) : null;
  const filterQuery = root.dataset.filterQuery || "";
  const list = document.getElementById("chat-list");
  let history = document.getElementById("history");
  const banner = document.getElementById("connection");
  const FETCH_HEADERS = { "X-Requested-With": "fetch" };

  // --- small helpers --------------------------------------------------------------------------------
  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function fragmentOf(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  }

  async function getHtml(url) {
    const response = await fetch(url, { headers: FETCH_HEADERS, credentials: "same-origin" });
    if (response.status === 204 || response.status === 404) return null;
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.text();
  }

  async function postForm(form, body) {
    const response = await fetch(form.action, {
      method: "POST",
      body: body || new FormData(form),
      headers: FETCH_HEADERS,
      credentials: "same-origin",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  function errorText(result) {
    return (result.data && result.data.error && result.data.error.message) || strings.sendFailed;
  }

  function idUrl(template, id) {
    return template.replace("/0/", "/" + id + "/");
  }

  // --- chat list ------------------------------------------------------------------------------------
  function sortKey(row) {
    return row.dataset.sort.split("_").map(Number);
  }

  function sortsBefore(a, b) {
    return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
  }

  function rowPlace(row) {
    const key = sortKey(row);
    for (const other of list.querySelectorAll(".chat-row")) {
      if (sortsBefore(key, sortKey(other))) {
        list.insertBefore(row, other);
        return;
      }
    }
    // Older than every row shown: it belongs on a page not loaded yet, unless this is the last one.
    if (!list.querySelector(".more")) list.appendChild(row);
  }

  async function chatRowRefresh(chatId) {
    const html = await getHtml(idUrl(root.dataset.rowUrl, chatId) + (filterQuery ? "?" + filterQuery : ""));
    const old = document.getElementById("chat-row-" + chatId);
    if (old) old.remove();
    if (!html) return; // no longer in this list (resolved, reassigned, filtered out)
    const row = fragmentOf(html).querySelector(".chat-row");
    if (chatId === openChat) {
      row.classList.add("current");
    }
    rowPlace(row);
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
  }

  async function chatListMore(more) {
    if (more.dataset.loading) return;
    more.dataset.loading = "true";
    try {
      const html = await getHtml(more.dataset.moreUrl);
      const fragment = fragmentOf(html || "");
      for (const row of fragment.querySelectorAll(".chat-row")) {
        if (document.getElementById(row.id)) row.remove(); // moved up live meanwhile
      }
      more.replaceWith(fragment);
      observeMore();
    } catch (error) {
      delete more.dataset.loading;
    }
  }

  const moreObserver =
    "IntersectionObserver" in window
      ? new IntersectionObserver((entries) => {
          for (const entry of entries) if (entry.isIntersecting) chatListMore(entry.target);
        })
      : null;

  function observeMore() {
    const more = list && list.querySelector(".more");
    if (more && moreObserver) moreObserver.observe(more);
  }

  if (list) {
    list.addEventListener("click", (event) => {
      const more = event.target.closest(".more");
      if (more) {
        event.preventDefault();
        chatListMore(more);
      }
    });
    observeMore();
  }

  document.addEventListener("change", (event) => {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
  });

  // --- conversation ---------------------------------------------------------------------------------
  function nearBottom() {
    return history.scrollHeight - history.scrollTop - history.clientHeight < 120;
  }

  function toBottom() {
    history.scrollTop = history.scrollHeight;
  }

  function daysDeduplicate() {
    let previous = null;
    for (const day of history.querySelectorAll(".day")) {
      if (day.dataset.day === previous) day.remove();
      else previous = day.dataset.day;
    }
  }

  function messagePut(html) {
    const fragment = fragmentOf(html);
    const message = fragment.querySelector(".message");
    // A row fetched for the chat open a moment ago must not land in the one open now.
    if (!message || !history || Number(message.dataset.chat) !== openChat) return;
    const existing = document.getElementById(message.id);
    if (existing) {
      existing.replaceWith(message);
      return;
    }
    const stick = nearBottom();
    history.appendChild(fragment);
    daysDeduplicate();
    if (stick) {
      toBottom();
      // Media grows the row once it loads: stay at the bottom the agent was reading.
      for (const media of message.querySelectorAll("img, video")) {
        media.addEventListener("load", toBottom, { once: true });
        media.addEventListener("loadedmetadata", toBottom, { once: true });
      }
    }
  }

  async function messageRefresh(messageId) {
    const html = await getHtml(idUrl(root.dataset.messageUrl, messageId));
    if (html) messagePut(html);
  }

  let olderLoading = false;
  async function olderLoad() {
    const older = history.querySelector(".older");
    if (!older || olderLoading) return;
    olderLoading = true;
    try {
      const html = await getHtml(root.dataset.olderUrl + "?before=" + encodeURIComponent(older.dataset.olderCursor));
      const fromBottom = history.scrollHeight - history.scrollTop;
      older.remove();
      history.insertBefore(fragmentOf(html || ""), history.firstChild);
      daysDeduplicate();
      history.scrollTop = history.scrollHeight - fromBottom; // keep what the agent was reading in place
    } finally {
      olderLoading = false;
    }
    if (history.scrollHeight <= history.clientHeight) olderLoad();
  }

  let readTimer = null;
  function readSoon() {
    if (!root.dataset.readUrl || document.visibilityState !== "visible") return;
    clearTimeout(readTimer);
    readTimer = setTimeout(() => {
      const body = new FormData();
      body.append("csrfmiddlewaretoken", csrfToken());
      postForm({ action: root.dataset.readUrl }, body);
    }, 400);
  }

  async function chatHeadRefresh() {
    // Another agent resolved, reopened or reassigned the open chat: redraw its header and assignee.
    const html = await getHtml(window.location.pathname + window.location.search);
    if (!html) return;
    const page = new DOMParser().parseFromString(html, "text/html");
    for (const selector of [".conversation-head", ".side-pane .assign"]) {
      const fresh = page.querySelector(selector);
      const current = document.querySelector(selector);
      if (fresh && current) current.replaceWith(fresh);
    }
  }

  document.addEventListener("visibilitychange", () => {
    const row = document.getElementById("chat-row-" + openChat);
    if (row && row.classList.contains("unread")) readSoon();
  });

  // Everything bound to one open conversation; run again when another chat is opened in place.
  function conversationInit() {
    history = document.getElementById("history");
    if (history) historyInit();
    composerInit();
    notesInit();
  }

  function historyInit() {
    toBottom();
    history.addEventListener("scroll", () => {
      if (history.scrollTop < 150) olderLoad();
    });
    if (history.scrollHeight <= history.clientHeight) olderLoad();
    history.addEventListener("submit", async (event) => {
      const form = event.target.closest("form[data-action=retry]");
      if (!form) return;
      event.preventDefault();
      const result = await postForm(form);
      if (result.ok && result.data && result.data.html) messagePut(result.data.html);
    });
  }

  // --- composer ---------------------------------------------------------------------------------------
  function composerInit() {
    const composer = document.getElementById("composer");
    if (!composer) return;
    const quickRepliesNode = document.getElementById("quick-replies");
    const quickReplies = (quickRepliesNode && JSON.parse(quickRepliesNode.textContent)) || [];
    const text = document.getElementById("composer-text");
    const file = document.getElementById("composer-file");
    const send = document.getElementById("composer-send");
    const error = document.getElementById("composer-error");
    const attachment = document.getElementById("composer-attachment");
    const menu = document.getElementById("quick-menu");
    const key = composer.querySelector("input[name=idempotency_key]");
    let sending = false;
    let quotaExceeded = send.disabled;
    let menuItems = [];
    let menuIndex = 0;

    const grow = () => {
      text.style.height = "auto";
      text.style.height = Math.min(text.scrollHeight, 160) + "px";
    };

    composer.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (sending || quotaExceeded) return;
      sending = true;
      send.disabled = true;
      error.textContent = "";
      let result;
      try {
        result = await postForm(composer);
      } catch (networkError) {
        // The same idempotency key stays in the form: sending again cannot send twice.
        result = { ok: false, status: 0, data: null };
      }
      sending = false;
      if (result.ok && result.data) {
        messagePut(result.data.html);
        toBottom();
        key.value = result.data.idempotency_key;
        text.value = "";
        file.value = "";
        attachment.hidden = true;
        grow();
      } else {
        const stick = nearBottom();
        error.textContent = errorText(result);
        if (stick) toBottom(); // the error line takes room from the history
        if (result.status === 429) {
          quotaExceeded = true;
          text.disabled = true;
          file.disabled = true;
        }
      }
      send.disabled = quotaExceeded;
      text.focus();
    });

    function menuClose() {
      menu.hidden = true;
      menuItems = [];
    }

    function slashToken() {
      const before = text.value.slice(0, text.selectionStart);
      const match = before.match(/(^|\s)\/([\w-]*)$/);
      return match ? { start: before.length - match[2].length - 1, word: match[2].toLowerCase() } : null;
    }

    function menuRender() {
      const token = slashToken();
      if (!token || !quickReplies.length) return menuClose();
      menuItems = quickReplies.filter((reply) => reply.shortcut.startsWith(token.word)).slice(0, 8);
      if (!menuItems.length) return menuClose();
      menuIndex = Math.min(menuIndex, menuItems.length - 1);
      menu.replaceChildren(
        ...menuItems.map((reply, index) => {
          const item = document.createElement("li");
          item.setAttribute("role", "option");
          item.className = index === menuIndex ? "active" : "";
          const shortcut = document.createElement("strong");
          shortcut.textContent = "/" + reply.shortcut;
          const preview = document.createElement("span");
          preview.textContent = " " + reply.text.slice(0, 80);
          item.append(shortcut, preview);
          item.addEventListener("mousedown", (mouse) => {
            mouse.preventDefault();
            menuIndex = index;
            menuPick();
          });
          return item;
        })
      );
      menu.hidden = false;
    }

    function menuPick() {
      const token = slashToken();
      const reply = menuItems[menuIndex];
      if (!token || !reply) return menuClose();
      const end = text.selectionStart;
      text.value = text.value.slice(0, token.start) + reply.text + text.value.slice(end);
      const caret = token.start + reply.text.length;
      text.setSelectionRange(caret, caret);
      menuClose();
      grow();
    }

    text.addEventListener("input", () => {
      menuIndex = 0;
      menuRender();
      grow();
    });
    text.addEventListener("keydown", (event) => {
      if (!menu.hidden && menuItems.length) {
        if (event.key === "ArrowDown" || event.key === "ArrowUp") {
          event.preventDefault();
          const step = event.key === "ArrowDown" ? 1 : -1;
          menuIndex = (menuIndex + step + menuItems.length) % menuItems.length;
          menuRender();
          return;
        }
        if (event.key === "Enter" || event.key === "Tab") {
          event.preventDefault();
          menuPick();
          return;
        }
        if (event.key === "Escape") {
          menuClose();
          return;
        }
      }
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
    text.addEventListener("blur", () => setTimeout(menuClose, 150));

    file.addEventListener("change", () => {
      if (!file.files.length) {
        attachment.hidden = true;
        return;
      }
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.textContent = strings.remove;
      remove.addEventListener("click", () => {
        file.value = "";
        attachment.hidden = true;
      });
      attachment.replaceChildren(strings.attached + " " + file.files[0].name + " ", remove);
      attachment.hidden = false;
      text.focus();
    });
    grow();
  }

  // --- private notes ----------------------------------------------------------------------------------
  function notesInit() {
    const noteForm = document.getElementById("note-form");
    if (!noteForm) return;
    noteForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const errorLine = noteForm.querySelector("[data-role=error]");
      const result = await postForm(noteForm);
      if (result.ok && result.data) {
        document.getElementById("notes").appendChild(fragmentOf(result.data.html));
        noteForm.reset();
        errorLine.textContent = "";
      } else {
        errorLine.textContent = errorText(result);
      }
    });
  }

  // --- opening another chat in place ------------------------------------------------------------------
  // The chat page is fetched and its conversation and side pane put in place of the current ones:
  // the socket stays open (no reconnect, no catch-up), which is what makes switching feel instant.
  async function chatOpen(url, { push }) {
    let html;
    try {
      html = await getHtml(url);
    } catch (error) {
      html = null;
    }
    if (!html) {
      window.location.href = url;
      return;
    }
    const page = new DOMParser().parseFromString(html, "text/html");
    const freshRoot = page.getElementById("inbox");
    const freshConversation = page.querySelector(".conversation");
    if (!freshRoot || !freshConversation || !freshRoot.dataset.chat) {
      window.location.href = url;
      return;
    }
    document.querySelector(".conversation").replaceWith(freshConversation);
    const freshSide = page.querySelector(".side-pane");
    const side = document.querySelector(".side-pane");
    if (side) side.remove();
    if (freshSide) root.appendChild(freshSide);
    root.classList.add("has-chat");
    openChat = Number(freshRoot.dataset.chat);
    root.dataset.chat = freshRoot.dataset.chat;
    root.dataset.readUrl = freshRoot.dataset.readUrl;
    root.dataset.olderUrl = freshRoot.dataset.olderUrl;
    document.title = page.title;
    for (const row of list.querySelectorAll(".chat-row.current")) row.classList.remove("current");
    const row = document.getElementById("chat-row-" + openChat);
    if (row) row.classList.add("current");
    if (push) window.history.pushState({ chat: openChat }, "", url);
    conversationInit();
    const text = document.getElementById("composer-text");
    if (text && !text.disabled) text.focus();
    conversationCatchUp(openChat, Number(freshRoot.dataset.eventCursor) || 0);
  }

  async function conversationCatchUp(chatId, after) {
    // Events of this chat that arrived while its page was being fetched were applied to the list
    // but had no conversation to land in: ask for them again, for this pane only.
    try {
      const response = await fetch(root.dataset.eventsUrl + "?chat=" + chatId + "&after=" + after, {
        headers: FETCH_HEADERS,
        credentials: "same-origin",
      });
      if (!response.ok || chatId !== openChat) return;
      const body = await response.json();
      for (const event of body.events) {
        if (event.type.startsWith("message.") && event.data && event.data.message) {
          messagesToRefresh.add(event.data.message);
          if (event.type === "message.created" && event.data.direction === "in") readSoon();
        }
      }
      flushSoon();
    } catch (error) {
      // The next event of this chat refreshes what it names; a reload shows everything.
    }
  }

  if (list) {
    list.addEventListener("click", (event) => {
      const link = event.target.closest(".chat-row a");
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      chatOpen(link.href, { push: true });
    });
  }
  window.addEventListener("popstate", () => {
    if (/\/inbox\/chats\/\d+\/$/.test(window.location.pathname)) chatOpen(window.location.href, { push: false });
    else window.location.reload();
  });

  conversationInit();

  // --- live events ------------------------------------------------------------------------------------
  // `cursor` is the last event applied with none missing below it; events seen above a gap wait in
  // `seenAhead` until the gap fills (pushes from two processes can arrive out of order) or a
  // catch-up fills it.
  let cursor = Number(root.dataset.eventCursor) || 0;
  const seenAhead = new Set();
  const chatsToRefresh = new Set();
  const messagesToRefresh = new Set();
  let flushTimer = null;
  let gapTimer = null;

  function flushSoon() {
    if (flushTimer) return;
    flushTimer = setTimeout(async () => {
      flushTimer = null;
      const chats = [...chatsToRefresh];
      const messages = [...messagesToRefresh];
      chatsToRefresh.clear();
      messagesToRefresh.clear();
      await Promise.allSettled([...chats.map(chatRowRefresh), ...messages.map(messageRefresh)]);
    }, 30);
  }

  function eventHandle(event) {
    if (event.chat == null) return;
    const type = event.type;
    const isOpen = event.chat === openChat;
    if (type === "message.created" || type.startsWith("chat.")) {
      if (list) chatsToRefresh.add(event.chat);
    }
    if (isOpen && history && type.startsWith("message.") && event.data && event.data.message) {
      messagesToRefresh.add(event.data.message);
      if (type === "message.created" && event.data.direction === "in") readSoon();
    }
    if (isOpen && type.startsWith("chat.") && event.data) {
      const head = document.querySelector("[data-testid=chat-status]");
      const assignee = document.querySelector("[data-testid=assignee]");
      const statusChanged = head && !head.classList.contains("status-" + event.data.status);
      const assigneeChanged = assignee && String(assignee.value) !== String(event.data.assignee || "");
      if (statusChanged || assigneeChanged) chatHeadRefresh();
    }
    flushSoon();
  }

  function eventApply(event) {
    if (event.cursor <= cursor || seenAhead.has(event.cursor)) return;
    seenAhead.add(event.cursor);
    while (seenAhead.has(cursor + 1)) {
      seenAhead.delete(cursor + 1);
      cursor += 1;
    }
    if (seenAhead.size && !gapTimer) {
      gapTimer = setTimeout(() => {
        gapTimer = null;
        if (seenAhead.size) catchUp();
      }, 1500);
    }
    eventHandle(event);
  }

  let catchingUp = false;
  const heldDuringCatchUp = [];

  async function catchUp() {
    if (catchingUp) return;
    catchingUp = true;
    try {
      for (;;) {
        const response = await fetch(root.dataset.eventsUrl + "?after=" + cursor, {
          headers: FETCH_HEADERS,
          credentials: "same-origin",
        });
        if (!response.ok) break;
        const body = await response.json();
        body.events.forEach(eventApply);
        if (!body.has_more) {
          // Everything up to the server's cursor is now known: nothing below it is missing.
          if (body.cursor > cursor) cursor = body.cursor;
          for (const seen of [...seenAhead]) if (seen <= cursor) seenAhead.delete(seen);
          break;
        }
      }
    } catch (error) {
      // The socket's next reconnect catches up again.
    } finally {
      catchingUp = false;
      heldDuringCatchUp.splice(0).forEach(eventApply);
    }
  }

  let socket = null;
  let attempt = 0;
  let reconnectTimer = null;
  let lastFrameAt = Date.now();
  // The server pings every WEBSOCKET_PING_SECONDS: a socket silent for two of them and a bit is
  // dead even if the browser has not noticed (a sleeping laptop, a proxy dropping it quietly).
  const silentLimitMs = (Number(root.dataset.pingSeconds) || 25) * 2500;

  function reconnectingShow(isReconnecting) {
    banner.hidden = !isReconnecting;
    root.dataset.live = isReconnecting ? "false" : "true";
  }

  function connect() {
    clearTimeout(reconnectTimer);
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const current = new WebSocket(scheme + window.location.host + "/ws/inbox/");
    socket = current;
    lastFrameAt = Date.now();
    current.addEventListener("message", (message) => {
      lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      if (frame.type === "ready") {
        attempt = 0;
        reconnectingShow(false);
        catchUp(); // also covers events between the page's rendering and this socket joining
      } else if (frame.type === "event") {
        if (catchingUp) heldDuringCatchUp.push(frame.event);
        else eventApply(frame.event);
      } else if (frame.type === "ping") {
        current.send('{"type":"pong"}');
      }
    });
    current.addEventListener("close", (close) => {
      if (current !== socket) return; // a socket we already replaced
      if (close.code === 4401) {
        window.location.reload(); // signed out: the page sends the agent to the login form
        return;
      }
      reconnectingShow(true);
      // Capped exponential backoff with jitter, so a restarted server is not hit by every tab at once.
      const delay = Math.min(15000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      reconnectTimer = setTimeout(connect, delay);
    });
  }

  function reconnectNow() {
    if (socket && socket.readyState === WebSocket.CLOSED) {
      attempt = 0;
      connect();
    }
  }

  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") reconnectNow();
  });
  setInterval(() => {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastFrameAt > silentLimitMs) {
      socket.close(); // its close handler reconnects and catches up
    }
  }, 5000);

  connect();
  // For people debugging in the console (and the browser tests): the live socket.
  window.conversaInbox = {
    get socket() {
      return socket;
    },
    get cursor() {
      return cursor;
    },
  };
})();
