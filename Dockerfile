# mcp-auth-sidecar image: Node 24 LTS, production dependencies only, non-root, read-only friendly.
# Pin the base by digest in your registry for reproducible builds (node:24-bookworm-slim@sha256:…).

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
# A young generation of 8 MB semi-spaces: under load V8 would grow it to 64 MB each on Node 24,
# most of the resident set (bench/RESULTS.md). Set NODE_OPTIONS in the pod to change it.
ENV NODE_OPTIONS="--max-semi-space-size=8"
# glibc's malloc: a fixed threshold of 2 MB for allocations served by mmap. Left to itself it
# raises the threshold after a large block is freed, and keeps free memory up to twice that in
# its arenas: on Node 24, one arena of 9.5 MB, over half of it free (bench/RESULTS.md).
ENV MALLOC_MMAP_THRESHOLD_=2097152
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Nothing is written at run time, so the root filesystem can be mounted read-only.
USER 10001:10001
EXPOSE 8080 9090
# node directly (no npm wrapper), so SIGTERM reaches the process and the drain runs.
# --heap-growing-percent=20: V8 on Node 24 keeps the pages of a heap that shrank for reuse, so the
# resident set follows the heap's peak; a full collection once the old generation outgrows its
# live size by a fifth (or by 8 MB, whichever is more) keeps that peak low. V8 flags are not
# allowed in NODE_OPTIONS, so it goes here (bench/RESULTS.md: 20-25 MB less, same CPU a request;
# p99 a few ms higher when saturated with never-seen tokens).
# An entry point, not a CMD, so that arguments run the commands: `docker run IMAGE --help`,
# `docker run -v $PWD:/p IMAGE policy check /p/policy.yaml`.
ENTRYPOINT ["node", "--heap-growing-percent=20", "dist/main.js"]
