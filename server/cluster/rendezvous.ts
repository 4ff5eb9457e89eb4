/**
 * Weighted rendezvous (highest random weight) hashing: each (node, name) pair gets a
 * pseudo-random score, scaled by the node's weight; the name goes to the best score. Every
 * node computes the same answer from the same member list, adding or removing a node
 * moves only the names it wins or held, and a node with twice the weight (free space)
 * gets twice the names on average.
 *
 * score = weight / -ln(u), u in (0, 1) from SHA-256(node NUL name): the minimum of
 * exponential variables with rates weight_i is node i with probability weight_i / sum.
 */
import { createHash } from 'node:crypto';

export interface Candidate {
  name: string;
  /** > 0; free bytes in practice. A node with 0 is never chosen (unless all are 0). */
  weight: number;
}

/** 52 bits of SHA-256(node NUL name) as a number in (0, 1). */
function unit(node: string, name: string): number {
  const digest = createHash('sha256').update(node).update('\0').update(name).digest();
  const bits = digest.readUIntBE(0, 6) * 16 + (digest[6] >> 4); // 52 bits
  return (bits + 0.5) / 2 ** 52;
}

/** The candidate `name` goes to, or null when there is none. Ties go to the smaller node name. */
export function rendezvous(candidates: readonly Candidate[], name: string): string | null {
  let best: string | null = null;
  let bestScore = -1;
  const anyWeight = candidates.some((c) => c.weight > 0);
  for (const c of candidates) {
    const weight = anyWeight ? c.weight : 1;
    if (weight <= 0) continue;
    const score = weight / -Math.log(unit(c.name, name));
    if (score > bestScore || (score === bestScore && best !== null && c.name < best)) {
      best = c.name;
      bestScore = score;
    }
  }
  return best;
}
