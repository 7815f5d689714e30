// Types of bin/launcher.mjs (plain JavaScript, since any Node may load it) for the TypeScript that imports it.
export declare const MIN_MAJOR: number;
export declare function mainScript(root: string): string;
export declare function handOverMethod(node: {
  major: number;
  platform: string;
  hasExecve: boolean;
}): 'in-process' | 'exec' | 'child';
export declare function bundledNode(platform: string, from?: string): string | null;
export interface LaunchOptions {
  readonly root?: string;
  readonly platform?: string;
  readonly major?: number;
  readonly execve?: ((file: string, args: readonly string[], env: NodeJS.ProcessEnv) => never) | null;
  readonly nodeBin?: string | null;
}
export declare function launch(argv: readonly string[], o?: LaunchOptions): Promise<void>;
