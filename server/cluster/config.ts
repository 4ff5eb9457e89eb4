/**
 * The cluster flags of `daxd serve` (--etcd, --node-name, --etcd-prefix, --node-ttl-s,
 * --advertise), checked before anything is opened: a bad value is a ClusterConfigError
 * naming the flag (the CLI reports it as a usage error).
 */
import { ETCD_ENDPOINTS_MAX, ETCD_PREFIX_BYTES_MAX, NODE_NAME_BYTES_MAX, NODE_TTL_S_DEFAULT, NODE_TTL_S_MAX, NODE_TTL_S_MIN } from './limits';

export interface ClusterConfig {
  /** etcd client URLs, http:// or https:// host:port. */
  etcdUrls: string[];
  nodeName: string;
  /** Key prefix, e.g. "/daxd" (no trailing slash). */
  prefix: string;
  ttlS: number;
  /** host:port clients reach this node's gRPC at; the bound address when absent. */
  advertise?: string;
}

export class ClusterConfigError extends Error {
  constructor(readonly flag: string, message: string) {
    super(`${flag}: ${message}`);
    this.name = 'ClusterConfigError';
  }
}

const NODE_NAME = /^[A-Za-z0-9._-]+$/;
const PREFIX = /^\/[A-Za-z0-9._/-]*$/;
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

export interface ClusterFlags {
  etcd: string;
  nodeName?: string;
  prefix?: string;
  ttlS?: string;
  advertise?: string;
}

/** The flags as a config; throws ClusterConfigError naming the first bad flag. */
export function clusterConfigFromFlags(flags: ClusterFlags): ClusterConfig {
  const urls = flags.etcd.split(',');
  if (urls.length > ETCD_ENDPOINTS_MAX) throw new ClusterConfigError('--etcd', `${urls.length} URLs (${urls.length} vs. max ${ETCD_ENDPOINTS_MAX})`);
  const etcdUrls = urls.map(etcdUrl);
  if (flags.nodeName === undefined) throw new ClusterConfigError('--node-name', 'is required with --etcd');
  if (flags.nodeName.length > NODE_NAME_BYTES_MAX || !NODE_NAME.test(flags.nodeName)) {
    throw new ClusterConfigError('--node-name', `${JSON.stringify(flags.nodeName.slice(0, 64))} is not 1..${NODE_NAME_BYTES_MAX} characters of [A-Za-z0-9._-]`);
  }
  const prefix = flags.prefix ?? '/daxd';
  if (prefix.length > ETCD_PREFIX_BYTES_MAX || !PREFIX.test(prefix) || prefix.endsWith('/') || prefix.includes('//')) {
    throw new ClusterConfigError('--etcd-prefix', `${JSON.stringify(prefix.slice(0, 64))} is not "/" then [A-Za-z0-9._/-] (no trailing or double slash, at most ${ETCD_PREFIX_BYTES_MAX} bytes)`);
  }
  const ttlS = flags.ttlS === undefined ? NODE_TTL_S_DEFAULT : Number(flags.ttlS);
  if (!/^\d+$/.test(flags.ttlS ?? '0') || !Number.isSafeInteger(ttlS) || ttlS < NODE_TTL_S_MIN || ttlS > NODE_TTL_S_MAX) {
    throw new ClusterConfigError('--node-ttl-s', `${JSON.stringify(flags.ttlS)} is not a whole number of seconds in [${NODE_TTL_S_MIN}, ${NODE_TTL_S_MAX}]`);
  }
  if (flags.advertise !== undefined) hostPort(flags.advertise, '--advertise');
  return { etcdUrls, nodeName: flags.nodeName, prefix, ttlS, advertise: flags.advertise };
}

/** host:port with a port in 1..65535; returns it unchanged. */
function hostPort(value: string, flag: string): string {
  const m = HOST_PORT.exec(value);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port < 1 || port > 65535) throw new ClusterConfigError(flag, `${JSON.stringify(value.slice(0, 64))} is not HOST:PORT`);
  return value;
}

/** One --etcd URL: http(s)://host:port, no path, query or credentials. */
function etcdUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ClusterConfigError('--etcd', `${JSON.stringify(text.slice(0, 64))} is not a URL (http://HOST:PORT)`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.port === '' || url.hostname === ''
    || (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new ClusterConfigError('--etcd', `${JSON.stringify(text.slice(0, 64))} is not http://HOST:PORT or https://HOST:PORT`);
  }
  return `${url.protocol}//${url.host}`;
}
