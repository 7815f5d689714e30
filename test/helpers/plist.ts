/**
 * A strict reader of Apple's XML property lists, for checking the launchd plist `ollana service`
 * writes without macOS's plutil: the XML declaration, the plist DOCTYPE, then one <plist version="1.0">
 * holding one value; dict, array, key, string, integer, true and false; every tag closed in order.
 * Anything else throws with where it is.
 */
export type PlistValue = string | number | boolean | PlistValue[] | { [key: string]: PlistValue };

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decode(text: string): string {
  return text.replace(/&(\w+);/g, (m, name: string) => {
    const c = ENTITIES[name];
    if (c === undefined) throw new Error(`unknown entity ${m}`);
    return c;
  });
}

type Token =
  | { kind: 'open' | 'close' | 'empty'; name: string; attrs: string; at: number }
  | { kind: 'text'; text: string; at: number };

function tokens(xml: string): Token[] {
  const out: Token[] = [];
  const re = /<(\/?)([A-Za-z]+)((?:\s+[a-z]+="[^"]*")*)\s*(\/?)>|([^<]+)/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  while (at < xml.length) {
    re.lastIndex = at;
    m = re.exec(xml);
    if (m === null) throw new Error(`not well-formed XML at offset ${at}: ${JSON.stringify(xml.slice(at, at + 30))}`);
    if (m[5] !== undefined) {
      if (m[5].includes('&') || m[5].trim() !== '') out.push({ kind: 'text', text: decode(m[5]), at });
    } else if (m[1] === '/') {
      if (m[4] === '/' || m[3] !== '') throw new Error(`bad closing tag at offset ${at}`);
      out.push({ kind: 'close', name: m[2]!, attrs: '', at });
    } else out.push({ kind: m[4] === '/' ? 'empty' : 'open', name: m[2]!, attrs: m[3]!.trim(), at });
    at = re.lastIndex;
  }
  return out;
}

export function parsePlist(xml: string): PlistValue {
  const head =
    /^<\?xml version="1\.0" encoding="UTF-8"\?>\s*<!DOCTYPE plist PUBLIC "-\/\/Apple\/\/DTD PLIST 1\.0\/\/EN" "http:\/\/www\.apple\.com\/DTDs\/PropertyList-1\.0\.dtd">\s*/.exec(
      xml,
    );
  if (head === null) throw new Error('no XML declaration and plist DOCTYPE at the start');
  const list = tokens(xml.slice(head[0].length));
  let i = 0;
  const next = (): Token => {
    const t = list[i++];
    if (t === undefined) throw new Error('unexpected end of the document');
    return t;
  };
  const expectClose = (name: string): void => {
    const t = next();
    if (t.kind !== 'close' || t.name !== name) throw new Error(`expected </${name}> at offset ${t.at}`);
  };
  const text = (name: string): string => {
    const t = next();
    if (t.kind === 'close' && t.name === name) return '';
    if (t.kind !== 'text') throw new Error(`expected text in <${name}> at offset ${t.at}`);
    expectClose(name);
    return t.text;
  };
  const value = (t: Token): PlistValue => {
    if (t.kind === 'text') throw new Error(`text outside a value at offset ${t.at}`);
    if (t.kind === 'close') throw new Error(`unexpected </${t.name}> at offset ${t.at}`);
    if (t.kind === 'empty') {
      if (t.name === 'true') return true;
      if (t.name === 'false') return false;
      if (t.name === 'dict') return {};
      if (t.name === 'array') return [];
      if (t.name === 'string') return '';
      throw new Error(`unexpected <${t.name}/> at offset ${t.at}`);
    }
    switch (t.name) {
      case 'string':
        return text('string');
      case 'integer': {
        const s = text('integer');
        if (!/^-?\d+$/.test(s)) throw new Error(`not an integer: ${s}`);
        return Number(s);
      }
      case 'array': {
        const items: PlistValue[] = [];
        for (let n = next(); !(n.kind === 'close' && n.name === 'array'); n = next()) items.push(value(n));
        return items;
      }
      case 'dict': {
        const dict: Record<string, PlistValue> = {};
        for (let n = next(); !(n.kind === 'close' && n.name === 'dict'); n = next()) {
          if (n.kind !== 'open' || n.name !== 'key') throw new Error(`expected <key> in a dict at offset ${n.at}`);
          const key = text('key');
          if (key in dict) throw new Error(`duplicate key ${key}`);
          dict[key] = value(next());
        }
        return dict;
      }
      default:
        throw new Error(`unknown element <${t.name}> at offset ${t.at}`);
    }
  };
  const root = next();
  if (root.kind !== 'open' || root.name !== 'plist' || root.attrs !== 'version="1.0"')
    throw new Error('the document element is not <plist version="1.0">');
  const v = value(next());
  expectClose('plist');
  if (i !== list.length) throw new Error(`content after </plist> at offset ${list[i]!.at}`);
  return v;
}
