/** Every daxd-load workload, by name (the order of --help). */
import { WORKLOAD_NAMES, type WorkloadName } from './load-options';
import type { Workload } from './run-context';
import { faultStormWorkloads } from './workloads/fault-storms';
import { fileIoWorkloads } from './workloads/file-io';
import { mappedWorkloads } from './workloads/mapped-access';
import { mixedWorkload } from './workloads/mixed';
import { pinChurnWorkload, pinStreamWorkload } from './workloads/pin-churn';
import { truncateVsPinWorkload } from './workloads/truncate-vs-pin';

const ALL: Workload[] = [...fileIoWorkloads, ...faultStormWorkloads, ...mappedWorkloads, pinChurnWorkload, pinStreamWorkload, truncateVsPinWorkload, mixedWorkload];

export const WORKLOADS: ReadonlyMap<WorkloadName, Workload> = new Map(WORKLOAD_NAMES.map((name) => {
  const w = ALL.find((x) => x.name === name);
  if (w === undefined) throw new Error(`workload ${name} has no implementation`);
  return [name, w] as const;
}));
