export type AvaCounts = {pass: number; fail: number; skip: number; failed: string[]};
export function isIntegrationTest(source: string): boolean;
export function testFiles(root: string): string[];
export function unitTestFiles(root: string): string[];
export function parseAvaOutput(output: string): AvaCounts;
export function failureDetails(output: string, maxLines?: number): string[];
export function orderByDuration(files: string[], durations: Record<string, number>): string[];
export function readDurations(file: string): Record<string, number>;
export function writeDurations(file: string, measured: Record<string, number>): void;
