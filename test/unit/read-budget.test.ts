import { describe, expect, it } from 'vitest';
import { ReadBudget } from '../../src/mcp/read-budget.js';

// Bodies read at once share one budget (src/mcp/read-budget.ts): first come first served, a
// waiting read that is cancelled gives up its place, and one larger than the budget goes alone.
describe('the read budget', () => {
  const never = { onCancel: () => {} };

  it('admits reads while they fit, queues the rest in order, and admits them as bytes are released', async () => {
    const budget = new ReadBudget(100);
    const order: string[] = [];
    expect(await budget.admit(60, never)).toBe(true);
    const b = budget.admit(50, never).then(() => order.push('b'));
    const c = budget.admit(10, never).then(() => order.push('c'));
    await new Promise((resolve) => setImmediate(resolve));
    // c would fit, but b came first: no overtaking, so a large read is never starved.
    expect(order).toEqual([]);
    budget.release(60);
    await Promise.all([b, c]);
    expect(order).toEqual(['b', 'c']);
  });

  it('lets a read larger than the whole budget go alone', async () => {
    const budget = new ReadBudget(100);
    expect(await budget.admit(500, never)).toBe(true);
    let admitted = false;
    const next = budget.admit(1, never).then(() => (admitted = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(admitted).toBe(false);
    budget.release(500);
    await next;
    expect(admitted).toBe(true);
  });

  it('gives up the place of a read whose client went, and lets the next one in', async () => {
    const budget = new ReadBudget(100);
    await budget.admit(100, never);
    let cancel!: () => void;
    const gone = budget.admit(50, { onCancel: (c) => (cancel = c) });
    const after = budget.admit(50, never);
    cancel();
    expect(await gone).toBe(false);
    budget.release(100);
    expect(await after).toBe(true);
  });

  it('keeps a line of at most maxWaiting reads, and says its length each time it changes', async () => {
    const lengths: number[] = [];
    const budget = new ReadBudget(100, (n) => lengths.push(n), 2);
    expect(budget.full(100)).toBe(false);
    await budget.admit(100, never);
    const queued = [budget.admit(10, never), budget.admit(10, never)];
    // The line is full: a read that would wait is not queued, whatever its size.
    expect(budget.full(1)).toBe(true);
    budget.release(100);
    expect(await Promise.all(queued)).toEqual([true, true]);
    expect(budget.full(1)).toBe(false);
    expect(lengths).toEqual([1, 2, 0]);
  });
});
