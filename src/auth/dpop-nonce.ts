// Server nonces for DPoP proofs (RFC 9449 section 9), DPOP_NONCE=on: a nonce is the number of a
// time slot (DPOP_PROOF_MAX_AGE_SECONDS long) and an HMAC of it, so checking one needs no state:
// the current and the previous slot's nonces are accepted, each lives one to two slots. The HMAC
// secret is this process's own, or with REDIS_URL one that every replica agrees on through Redis
// (the first to write it wins; read again at each new slot, so a Redis emptied meanwhile is
// agreed on again), so a nonce from one replica is good at the others.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';

const MAC_BYTES = 16;
const SLOT_BYTES = 4;
const SECRET_BYTES = 32;
// 4 bytes of slot and 16 of MAC, base64url.
const NONCE = /^[A-Za-z0-9_-]{27}$/;

export interface NonceSharing {
  redis: Pick<Redis, 'set' | 'get'>;
  key: string;
  onError: (error: unknown) => void;
}

export class NonceIssuer {
  #secret = randomBytes(SECRET_BYTES);
  #slot = -1;
  #current = '';

  constructor(
    private readonly slotMs: number,
    private readonly now: () => number,
    private readonly sharing?: NonceSharing,
  ) {}

  /** The nonce to hand out now (the DPoP-Nonce header). */
  current(): string {
    const slot = this.#slotAt(this.now());
    if (slot !== this.#slot) {
      this.#slot = slot;
      this.#current = this.#make(slot);
      void this.share();
    }
    return this.#current;
  }

  /** Whether a proof's nonce was issued in this slot or the one before (by any replica sharing the secret). */
  valid(nonce: unknown): boolean {
    if (typeof nonce !== 'string' || !NONCE.test(nonce)) return false;
    const bytes = Buffer.from(nonce, 'base64url');
    const slot = bytes.readUInt32BE(0);
    const now = this.#slotAt(this.now());
    if (slot !== now && slot !== (now - 1) >>> 0) return false;
    return timingSafeEqual(bytes.subarray(SLOT_BYTES), this.#mac(slot));
  }

  /** Agrees on the secret with the other replicas (REDIS_URL); until it answers, this process's own. */
  async share(): Promise<void> {
    if (this.sharing === undefined) return;
    const { redis, key, onError } = this.sharing;
    try {
      await redis.set(key, randomBytes(SECRET_BYTES).toString('hex'), 'NX');
      const agreed = await redis.get(key);
      if (agreed === null || !/^[0-9a-f]{64}$/.test(agreed)) return;
      const secret = Buffer.from(agreed, 'hex');
      if (secret.equals(this.#secret)) return;
      this.#secret = secret;
      if (this.#slot !== -1) this.#current = this.#make(this.#slot);
    } catch (error) {
      onError(error);
    }
  }

  #slotAt(ms: number): number {
    return Math.floor(ms / this.slotMs) >>> 0;
  }

  #mac(slot: number): Buffer {
    const data = Buffer.alloc(SLOT_BYTES);
    data.writeUInt32BE(slot);
    return createHmac('sha256', this.#secret).update(data).digest().subarray(0, MAC_BYTES);
  }

  #make(slot: number): string {
    const data = Buffer.alloc(SLOT_BYTES);
    data.writeUInt32BE(slot);
    return Buffer.concat([data, this.#mac(slot)]).toString('base64url');
  }
}
