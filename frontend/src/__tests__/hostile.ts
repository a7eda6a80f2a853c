/**
 * Hostile model outputs: each must render as harmless text. Shared by the Vitest sanitizer
 * tests and (via the built page) the browser e2e test.
 */
export const hostile: { name: string; text: string }[] = [
  { name: 'img onerror', text: 'look <img src=x onerror=alert(1)> here' },
  { name: 'javascript link', text: '[x](javascript:alert(1))' },
  { name: 'javascript link uppercase + spaces', text: '[x]( JaVaScRiPt:alert(1) )' },
  { name: 'svg onload', text: '<svg onload=alert(1)><circle r=5 /></svg>' },
  { name: 'script tag', text: '<script>alert(1)</script>' },
  { name: 'html in code fence', text: '```html\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n```' },
  {
    name: 'fence closing early',
    text: '```js\nconsole.log(1)\n</code></pre><img src=x onerror=alert(1)><pre><code>\n```\n<script>alert(2)</script>',
  },
  { name: 'fence info injection', text: '```"><img src=x onerror=alert(1)> x\ncode\n```' },
  { name: 'iframe', text: '<iframe src="https://evil.example/"></iframe>' },
  { name: 'style tag', text: '<style>body{display:none}</style>' },
  { name: 'data html link (raw)', text: '<a href="data:text/html,<script>alert(1)</script>">click</a>' },
  { name: 'data html link (markdown)', text: '[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)' },
  { name: 'remote image', text: '![x](https://evil.example/t.png)' },
  { name: 'protocol-relative image', text: '![x](//evil.example/t.png)' },
  { name: 'form', text: '<form action="https://evil.example"><input name=a><button>go</button></form>' },
  { name: 'meta refresh', text: '<meta http-equiv="refresh" content="0;url=https://evil.example">' },
  { name: 'vbscript link', text: '[x](vbscript:msgbox(1))' },
  { name: 'entity-encoded javascript', text: '[x](javascript&#58;alert(1))' },
  { name: 'entity-encoded javascript (hex)', text: '[x](&#x6A;avascript:alert(1))' },
  { name: 'autolink javascript', text: '<javascript:alert(1)>' },
  { name: 'reference link javascript', text: '[x][r]\n\n[r]: javascript:alert(1)' },
  { name: 'file link', text: '[x](file:///etc/passwd)' },
  { name: 'inline style attr', text: '<p style="position:fixed;top:0">x</p>' },
  { name: 'object/embed', text: '<object data="x.swf"></object><embed src="x.swf">' },
  { name: 'link tag css', text: '<link rel="stylesheet" href="https://evil.example/x.css">' },
  { name: 'base tag', text: '<base href="https://evil.example/">' },
  { name: 'math xlink', text: '<math><maction xlink:href="javascript:alert(1)">x</maction></math>' },
  { name: 'image with onerror in title', text: '![a](/ok.png "x\\" onerror=\\"alert(1)")' },
  { name: 'nested brackets', text: '[[x](javascript:alert(1))](https://ok.example)' },
  { name: 'table with html', text: '| a | b |\n|---|---|\n| <img src=x onerror=alert(1)> | <script>1</script> |' },
]
