# One image for every edgecut service; compose.yaml picks the service with the command.
# Build stage: full install (the schemas' generated code is committed, so no flatc is needed here).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npx tsc --noEmit -p .

# Runtime stage: production dependencies only.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/bin ./bin
COPY --from=build /app/cli ./cli
COPY --from=build /app/model ./model
COPY --from=build /app/planning ./planning
COPY --from=build /app/measurement ./measurement
COPY --from=build /app/runtime ./runtime
COPY --from=build /app/broker ./broker
COPY --from=build /app/services ./services
COPY --from=build /app/schemas ./schemas
COPY --from=build /app/data ./data
# `edgecut bench paper` measures the paper's scenarios with the real services, on the gateway itself.
COPY --from=build /app/bench ./bench
COPY --from=build /app/tsconfig.json ./
# Every service answers GET /healthz on its METRICS_PORT (compose.yaml sets one per service).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["node", "bin/edgecut.js", "health"]
# Run unprivileged. A named volume mounted at /models or /data (the broker's store) starts with its directory's owner, so
# the services can write there.
RUN mkdir -p /models /data && chown node:node /models /data
USER node
# A bounded young generation keeps a service's resident memory flat under a steady stream of frames (docs/deploy.md).
ENV NODE_OPTIONS=--max-semi-space-size=1
ENTRYPOINT ["node", "bin/edgecut.js"]
