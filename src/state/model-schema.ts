// JSON schemas of the model's Workload and Service (model.ts), shared by the snapshot file's validator and
// the per-resource validation of what the controller sends (validate-resource.ts).

const stringArray = { type: 'array', items: { type: 'string' } } as const;
const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;
const port = { type: 'integer', minimum: 1, maximum: 65535, description: 'a port from 1 to 65535' } as const;

export const WORKLOAD_JSON_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: [
    'uid',
    'namespace',
    'name',
    'node',
    'serviceAccount',
    'ips',
    'labels',
    'meshEnabled',
    'netnsPath',
    'excludeOutboundPorts',
    'excludeOutboundCidrs',
  ],
  properties: {
    uid: { type: 'string' },
    namespace: { type: 'string' },
    name: { type: 'string' },
    node: { type: 'string' },
    serviceAccount: { type: 'string' },
    ips: stringArray,
    labels: stringMap,
    meshEnabled: { type: 'boolean' },
    netnsPath: { type: 'string' },
    excludeOutboundPorts: { type: 'array', items: port },
    excludeOutboundCidrs: stringArray,
  },
} as const;

export const SERVICE_JSON_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['namespace', 'name', 'hostname', 'vips', 'ports'],
  properties: {
    namespace: { type: 'string' },
    name: { type: 'string' },
    hostname: { type: 'string' },
    vips: stringArray,
    ports: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['port', 'endpoints'],
        properties: {
          name: { type: 'string' },
          port,
          endpoints: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['ip', 'port'],
              properties: { ip: { type: 'string' }, port, workloadUid: { type: 'string' } },
            },
          },
        },
      },
    },
  },
} as const;
