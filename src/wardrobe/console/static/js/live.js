// Live updates through the service's Socket.IO hub (docs/realtime.md): a task's timeline while
// its page is open, and provider health on the providers page. One socket per tab, opened on first
// use; after every (re)connect the subscriptions are sent again (events are not replayed), and an
// expired access token is refreshed before connecting again.
import { io } from "../vendor/socket.io-4.8.4.esm.min.js";
import { freshAccessToken, refreshTokens } from "./api.js";

let socket = null;
const taskListeners = new Map(); // task id -> Set of listeners
const healthListeners = new Set();

function resubscribe() {
  const ids = [...taskListeners.keys()];
  if (ids.length > 0) socket.emit("subscribe", { task_ids: ids });
  if (healthListeners.size > 0) socket.emit("subscribe_providers", {});
}

function connect() {
  if (socket) return socket;
  socket = io({
    path: "/socket.io",
    auth: (send) => {
      freshAccessToken().then(
        (token) => send({ token }),
        () => send({ token: "" }),
      );
    },
    reconnectionAttempts: 5,
    reconnectionDelay: 3000,
  });
  socket.on("connect", resubscribe);
  socket.on("connect_error", (error) => {
    if (error?.message === "AUTH_TOKEN_EXPIRED") refreshTokens().then(() => socket?.connect(), () => null);
  });
  socket.on("session.ended", (event) => {
    if (event?.payload?.code === "AUTH_TOKEN_EXPIRED") refreshTokens().then(() => socket?.connect(), () => null);
  });
  socket.on("task.updated", (event) => {
    const task = event?.payload;
    for (const listener of taskListeners.get(task?.id) || []) listener(task);
  });
  socket.on("provider.health", (event) => {
    for (const listener of healthListeners) listener(event?.payload);
  });
  return socket;
}

/** Call ``listener(task)`` on each update of task ``id``; returns the unsubscribe function. */
export function watchTask(id, listener) {
  const live = connect();
  if (!taskListeners.has(id)) {
    taskListeners.set(id, new Set());
    if (live.connected) live.emit("subscribe", { task_ids: [id] });
  }
  taskListeners.get(id).add(listener);
  return () => {
    const listeners = taskListeners.get(id);
    if (!listeners) return;
    listeners.delete(listener);
    if (listeners.size === 0) {
      taskListeners.delete(id);
      if (socket?.connected) socket.emit("unsubscribe", { task_ids: [id] });
    }
  };
}

/** Call ``listener(providers)`` with each provider.health push; returns the unsubscribe function. */
export function watchProviderHealth(listener) {
  const live = connect();
  healthListeners.add(listener);
  if (healthListeners.size === 1 && live.connected) live.emit("subscribe_providers", {});
  return () => {
    healthListeners.delete(listener);
    if (healthListeners.size === 0 && socket?.connected) socket.emit("unsubscribe_providers", {});
  };
}

export function closeLive() {
  taskListeners.clear();
  healthListeners.clear();
  if (socket) {
    socket.disconnect();
    socket = null;
  }
}
