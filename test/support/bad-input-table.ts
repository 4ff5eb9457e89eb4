/**
 * The bad-input table runner: one `it` per row, each sending one malformed, out-of-range
 * or unauthorised request and asserting the exact gRPC status and daxd-reason. Boundary
 * rows (code OK) must succeed. A last `it` checks the table is as long as its file says.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { failure } from './raw-rpc';

export interface BadInputRow {
  name: string;
  run: () => Promise<unknown>;
  /** Expected status, or OK for boundary rows that must succeed. */
  code: grpc.status;
  reason: string | null;
}

/** Declares the table's tests inside the caller's describe(). */
export function badInputTable(rows: readonly BadInputRow[], minFailingRows: number): void {
  for (const row of rows) {
    it(`${row.name} -> ${grpc.status[row.code]}${row.reason ? ` / ${row.reason}` : ''}`, async function () {
      if (row.code === grpc.status.OK) {
        await row.run();
        return;
      }
      const err = await failure(row.run());
      assert.equal(grpc.status[err.code], grpc.status[row.code], err.message);
      assert.equal(err.reason, row.reason, err.message);
    });
  }

  it(`the table has at least ${minFailingRows} failing rows`, function () {
    assert.ok(rows.filter((r) => r.code !== grpc.status.OK).length >= minFailingRows);
  });
}
