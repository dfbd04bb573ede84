// The old Lru (persistent iterator) compiled by tsc vs by esbuild: does either leak?
import { Lru as New } from '../src/auth/verdict-cache.js';
const { Lru: Old } = await import(process.argv[2]!);
for (const [name, C] of [['old', Old], ['new', New]] as const) {
  const lru = new C(100); lru.set('k', 1);
  global.gc!(); const b = process.memoryUsage().heapUsed;
  for (let i = 0; i < 1e6; i++) lru.get('k');
  global.gc!(); console.log(name, ((process.memoryUsage().heapUsed - b) / 1e6).toFixed(1), 'MB');
}
