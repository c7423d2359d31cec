/**
 * Helpers of the benchmarks that run services as processes: a free port, a process's resident memory (now and at
 * its peak) and CPU time.
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';

/** A free TCP port on loopback (for a broker that must restart on the same one, or a second broker). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no free port on 127.0.0.1');
  return address.port;
}

/** A memory field of /proc/PID/status (`VmRSS`, `VmHWM`), MB, or undefined when the process is gone. */
async function statusMB(pid: number | undefined, field: 'VmRSS' | 'VmHWM'): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** Resident set size of a process, MB, or undefined when it is gone. */
export function rssMB(pid: number | undefined): Promise<number | undefined> {
  return statusMB(pid, 'VmRSS');
}

/** CPU seconds (user + system) a process has used, or undefined when it is gone. */
export async function cpuSeconds(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of /proc/PID/stat, 12 and 13 after the command name.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Minor page faults a process has taken (first touches of memory it was given), or undefined when it is gone. On the
 * virtual machines this project is measured on, a first touch costs several microseconds (a fresh 1 MiB buffer
 * about 4 ms), so a process that allocates fresh memory per message pays for it in CPU time.
 */
export async function minorFaults(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // minflt is field 10 of /proc/PID/stat, 8 after the command name.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    return undefined;
  }
}

/** Peak resident set size of a process (VmHWM), MB; NaN when it is gone. */
export async function peakRssMB(pid: number | undefined): Promise<number> {
  return (await statusMB(pid, 'VmHWM')) ?? Number.NaN;
}
