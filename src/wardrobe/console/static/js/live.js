// Live updates through the service's Socket.IO hub (docs/realtime.md), on the kit's socket
// (/kit/js/live.js): a task's timeline while its page is open, and provider health on the
// providers page. The socket opens on first use; after every (re)connect the subscriptions are
// sent again (events are not replayed).
import { closeSocket, listen, openSocket } from "/kit/js/live.js";
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
  socket = openSocket({ freshAccessToken, refreshTokens });
  socket.on("connect", resubscribe);
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
  return listen(taskListeners, id, listener, {
    first: () => live.connected && live.emit("subscribe", { task_ids: [id] }),
    last: () => socket?.connected && socket.emit("unsubscribe", { task_ids: [id] }),
  });
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
  closeSocket(socket);
  socket = null;
}
