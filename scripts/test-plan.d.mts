// Types of scripts/test-plan.mjs (plain JavaScript: scripts/run-tests.mjs runs without tsx).
export declare const ROOT: string;
export declare const TEST_DIRS: readonly string[];
export declare const SUITE: string;
export declare function ownProcess(file: string): string | undefined;
export declare function testFiles(): string[];
export declare function sharedFiles(): string[];
