// What pages hand each other within one visit (nothing here outlives the tab): the features list,
// read once; a task just created (its page shows it at once, before any read); the signed URLs of
// results, so a result chosen as the next task's input can be shown there.
import { get } from "./api.js";

let features = null;
const createdTasks = new Map();
const resultUrls = new Map();

/** GET /api/v1/features, once per visit (again after a failure). */
export function loadFeatures() {
  if (!features) {
    features = get("/api/v1/features").catch((error) => {
      features = null;
      throw error;
    });
  }
  return features;
}

export async function featureNamed(key) {
  try {
    return (await loadFeatures()).find((feature) => feature.key === key) || null;
  } catch {
    return null;
  }
}

export function rememberTask(task) {
  createdTasks.set(task.id, task);
}

export function takeTask(id) {
  const task = createdTasks.get(id) || null;
  createdTasks.delete(id);
  return task;
}

export function rememberResult(key, url) {
  if (key && url) resultUrls.set(key, url);
}

export function resultUrl(key) {
  return resultUrls.get(key) || null;
}

/** Everything of the signed-out user. */
export function forgetState() {
  features = null;
  createdTasks.clear();
  resultUrls.clear();
}
