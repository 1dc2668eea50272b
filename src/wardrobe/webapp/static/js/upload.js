// One picture from the device to storage (docs/clients.md, Uploads): a grant from the API, the
// bytes sent with exactly the grant's method, URL and headers, then — unless the storage answered
// with the API's own verification (the local backend, whose URL is this origin's
// /api/v1/storage/objects/…) — POST /api/v1/uploads/complete, which checks the object in the
// bucket. Resolves with the object key a task takes as an image input.
import { ApiError, post, unwrap } from "./api.js";

export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"];

async function send(upload, file) {
  let response;
  try {
    response = await fetch(upload.url, {
      method: upload.method,
      headers: upload.headers || {},
      body: file,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "NETWORK_ERROR", error.message);
  }
  if ((response.headers.get("content-type") || "").includes("application/json")) {
    await unwrap(response); // the local backend's envelope: verified on arrival, or its error
    return true;
  }
  if (!response.ok) throw new ApiError(response.status, `HTTP_${response.status}`, response.statusText);
  return false; // a bucket's answer: the API has not seen the bytes yet
}

/** Upload ``file`` (a File from an <input type=file>); the object key. */
export async function uploadImage(file) {
  const grant = await post("/api/v1/uploads", {
    filename: file.name || "image",
    content_type: file.type,
    size: file.size,
  });
  const verified = await send(grant.upload, file);
  if (!verified) await post("/api/v1/uploads/complete", { object_key: grant.object_key });
  return grant.object_key;
}
