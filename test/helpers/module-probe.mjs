// Loaded with `node --import`: every module that OpenTelemetry's packages resolve to is appended to
// the file named by MODULE_PROBE_FILE (tracing-off.test.ts: none without an OTLP endpoint).
import { register } from 'node:module';

register(
  `data:text/javascript,${encodeURIComponent(`
    import { appendFileSync } from 'node:fs';
    export async function resolve(specifier, context, next) {
      const resolved = await next(specifier, context);
      if (resolved.url.includes('@opentelemetry')) appendFileSync(process.env.MODULE_PROBE_FILE, resolved.url + '\\n');
      return resolved;
    }
  `)}`,
);
