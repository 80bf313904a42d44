// LZ4 block decompression (the block format of lz4.org, without the frame
// wrapper): what a `Compressed` frame holds. Small, and strict: input that
// would write past the size it is to have, reach back before its start or
// end mid-sequence is refused.

/**
 * Decompresses `src` into exactly `size` bytes.
 * @param {Uint8Array} src
 * @param {number} size
 * @returns {Uint8Array}
 */
export function lz4Decompress(src, size) {
  const out = new Uint8Array(size);
  let s = 0;
  let d = 0;
  /** @param {string} why @returns {never} */
  const bad = (why) => {
    throw new RangeError(`LZ4: ${why}`);
  };
  /** A length's extra bytes: each 255 adds and goes on. @param {number} n */
  const more = (n) => {
    let b;
    do {
      if (s >= src.length) bad("a length runs past the end");
      b = src[s++];
      n += b;
    } while (b === 255);
    return n;
  };
  while (s < src.length) {
    const token = src[s++];
    let literals = token >>> 4;
    if (literals === 15) literals = more(literals);
    if (s + literals > src.length) bad("literals run past the input");
    if (d + literals > size) bad("literals run past the output");
    out.set(src.subarray(s, s + literals), d);
    s += literals;
    d += literals;
    // The last sequence is literals only.
    if (s === src.length) break;
    if (s + 2 > src.length) bad("an offset runs past the end");
    const offset = src[s] | (src[s + 1] << 8);
    s += 2;
    if (offset === 0 || offset > d) bad(`offset ${offset} reaches before the start`);
    let len = token & 15;
    if (len === 15) len = more(len);
    len += 4;
    if (d + len > size) bad("a match runs past the output");
    // Byte by byte: a match may overlap what it writes.
    for (let i = 0; i < len; i++, d++) out[d] = out[d - offset];
  }
  if (d !== size) bad(`${d} bytes, not the ${size} said`);
  return out;
}
