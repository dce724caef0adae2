# Ferry's agent image: a build stage compiles the BPF objects, the native addon and TypeScript;
# the runtime stage runs `ferry agent` (or `ferry controller`) on the current Node LTS with libbpf.
FROM node:lts-trixie-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev libelf-dev zlib1g-dev linux-libc-dev make g++ python3 pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY bpf ./bpf
COPY native ./native
COPY src ./src
COPY proto ./proto
COPY bin ./bin
RUN npm run build:bpf && npm run build:native && npx tsc -p tsconfig.json \
 && npm prune --omit=dev

FROM node:lts-trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ferry
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/bin ./bin
COPY --from=build /src/dist/src ./dist/src
# The gRPC services' .proto files, loaded at run time (src/proto).
COPY --from=build /src/proto ./proto
COPY --from=build /src/bpf/build ./bpf/build
COPY --from=build /src/native/build/Release/ferry.node ./native/build/Release/ferry.node
ENV UV_THREADPOOL_SIZE=16
# 15021 readiness; 15000 admin and 15020 metrics are reserved for the agent.
EXPOSE 15021
ENTRYPOINT ["node", "/opt/ferry/bin/ferry.js"]
CMD ["agent"]
