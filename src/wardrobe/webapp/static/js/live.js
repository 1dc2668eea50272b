// Live updates through the service's Socket.IO hub (docs/realtime.md), on the kit's socket
// (/kit/js/live.js): a task's progress while its page is open, and the user's quota and orders.
// The socket opens once signed in; after every (re)connect the subscriptions are sent again and
// each task's state is taken from the acknowledgement (events sent while away are not replayed).
// Pages that must not depend on the socket ask live() and poll the API while it is down.
import { closeSocket, listen, openSocket } from "/kit/js/live.js";
import { freshAccessToken, refreshTokens } from "./api.js";

let socket = null;
const taskListeners = new Map(); // task id -> Set of listeners
const userListeners = new Map(); // event name -> Set of listeners

function deliver(task) {
  for (const listener of taskListeners.get(task?.id) || []) listener(task, "socket");
}

function subscribe(ids) {
  if (!socket?.connected || ids.length === 0) return;
  socket.emit("subscribe", { task_ids: ids }, (ack) => {
    for (const task of ack?.tasks || []) deliver(task);
  });
}

export function connectLive() {
  if (socket) return socket;
  socket = openSocket({ freshAccessToken, refreshTokens });
  socket.on("connect", () => subscribe([...taskListeners.keys()]));
  socket.on("task.updated", (event) => deliver(event?.payload));
  for (const name of ["quota.updated", "order.updated"]) {
    socket.on(name, (event) => {
      for (const listener of userListeners.get(name) || []) listener(event?.payload);
    });
  }
  return socket;
}

/** Whether pushes arrive now (else a page polls). */
export function live() {
  return Boolean(socket?.connected);
}

/** Call ``listener(task, "socket")`` on each update of task ``id``; returns the unsubscribe function. */
export function watchTask(id, listener) {
  connectLive();
  return listen(taskListeners, id, listener, {
    first: () => subscribe([id]),
    last: () => socket?.connected && socket.emit("unsubscribe", { task_ids: [id] }),
  });
}

/** Call ``listener(payload)`` on each ``quota.updated`` or ``order.updated``; returns the unsubscribe function. */
export function onUserEvent(name, listener) {
  connectLive();
  return listen(userListeners, name, listener);
}

export function closeLive() {
  taskListeners.clear();
  userListeners.clear();
  closeSocket(socket);
  socket = null;
}
