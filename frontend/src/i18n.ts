/**
 * A tiny i18n: two dictionaries and a reactive locale. Chinese is the default (our users are
 * mostly Chinese-speaking offices); English is one click away and remembered in localStorage.
 */
import { computed, ref } from 'vue'

const zh = {
  appName: '小Q',
  references: '参考资料',
  passage: '段落',
  score: '得分',
  wordsRank: '词匹配名次',
  meaningRank: '语义名次',
  showRetrieved: '查看检索到的内容',
  hideRetrieved: '收起检索结果',
  knowledgeBase: '知识库',
  noKnowledgeBase: '不使用',
  attach: '添加文件',
  uploading: '上传中 {pct}%',
  ingesting: '正在读取文件 {done}/{total}',
  newChat: '新对话',
  search: '搜索对话…',
  noResults: '没有找到',
  conversations: '对话',
  rename: '重命名',
  delete: '删除',
  deleted: '已删除「{title}」',
  undo: '撤销',
  exportMd: '导出 Markdown',
  exportJson: '导出 JSON',
  untitled: '新对话',
  placeholder: '输入问题，Enter 发送',
  send: '发送',
  stop: '停止',
  regenerate: '重新生成',
  edit: '编辑',
  saveAndSend: '保存并发送',
  cancel: '取消',
  copy: '复制',
  copied: '已复制',
  run: '▶ 运行',
  runStop: '■ 停止',
  runLoading: '正在加载 Python…',
  runRunning: '运行中…',
  runTimedOut: '超时（{s} 秒），已停止',
  runStopped: '已停止',
  runNoOutput: '（没有输出）',
  runExplain: '解释这个错误',
  runMissing: '运行 Python 需要 Pyodide：在 frontend/ 里执行 npm ci（或 ./setup.sh --test）后重启小Q',
  runExplainPrompt: '我运行这段 {lang} 代码时出错了，请解释原因并告诉我怎么改：\n\n```{lang}\n{code}\n```\n\n错误信息：\n\n```\n{error}\n```',
  offline: '无法连接小Q服务器',
  jumpToLatest: '回到最新',
  emptyTitle: '你好，我是小Q',
  emptySubtitle: '在你自己的电脑上运行的私有助手。试试这些问题：',
  catFaq: '公司常见问题',
  catCode: '编程帮助',
  catWriting: '写作',
  ttft: '首字 {ms} ms',
  tps: '{tps} 词元/秒',
  trimmed: '较早的对话已被总结',
  incomplete: '（回答未完成）',
  repetition: '已停止：回答在不断重复',
  lengthCut: '回答达到了长度上限',
  continueReply: '继续',
  busy: '服务器繁忙，{n} 秒后重试',
  down: '无法连接服务器，请检查服务是否在运行',
  loading: '模型加载中，请稍候…',
  retry: '重试',
  errorPrefix: '出错了：',
  apiKeyTitle: '需要 API 密钥',
  apiKeyHint: '这个服务器需要 API 密钥。它只保存在本浏览器中。',
  apiKeyWrong: '密钥不正确，请重新输入',
  apiKeySave: '保存',
  loginTitle: '登录小Q',
  username: '用户名',
  password: '密码',
  login: '登录',
  logout: '退出登录',
  loginWrong: '用户名或密码不正确',
  loginWait: '尝试次数过多，请 {n} 秒后再试',
  admin: '用户管理',
  addUser: '添加用户',
  makeAdmin: '管理员',
  groups: '分组（逗号分隔）',
  close: '关闭',
  themeAuto: '主题：跟随系统',
  themeLight: '主题：浅色',
  themeDark: '主题：深色',
  language: 'English',
  menu: '菜单',
  confirmDelete: '删除这个对话？',
  thinking: '思考中…',
  summarizing: '正在整理之前的对话…',
  you: '你',
  assistant: '小Q',
  contextTrimmedHint: '为适应上下文长度，较早的消息被压缩成摘要',
  mic: '按住说话；或点一下开始、再点一下结束',
  handsFree: '免提：说完自动发送',
  speakerOn: '朗读回答：开',
  speakerOff: '朗读回答：关',
  review: '发送前确认识别结果',
  listening: '正在听…',
  transcribing: '正在识别…',
  speaking: '正在朗读…',
  micDenied: '麦克风权限被拒绝：请在浏览器地址栏的权限设置中允许使用麦克风。',
  micMissing: '没有找到麦克风：请连接麦克风后再试。',
  micInsecure: '浏览器只在 HTTPS 或 localhost 上允许使用麦克风（见 README 的 --tls-cert）。',
  micError: '无法使用麦克风：{msg}',
  noSpeech: '没有听到说话，请再试一次。',
  transcribeError: '语音识别失败：{msg}',
  speechError: '朗读失败：{msg}',
}

export type MessageKey = keyof typeof zh

const en: Record<MessageKey, string> = {
  references: 'References',
  passage: 'Passage',
  score: 'Score',
  wordsRank: 'Words rank',
  meaningRank: 'Meaning rank',
  showRetrieved: 'What was retrieved',
  hideRetrieved: 'Hide what was retrieved',
  knowledgeBase: 'Knowledge base',
  noKnowledgeBase: 'None',
  attach: 'Attach files',
  uploading: 'Uploading {pct}%',
  ingesting: 'Reading files {done}/{total}',
  appName: 'XiaoQ',
  newChat: 'New chat',
  search: 'Search chats…',
  noResults: 'No results',
  conversations: 'Chats',
  rename: 'Rename',
  delete: 'Delete',
  deleted: 'Deleted “{title}”',
  undo: 'Undo',
  exportMd: 'Export Markdown',
  exportJson: 'Export JSON',
  untitled: 'New chat',
  placeholder: 'Ask anything (Enter to send)',
  send: 'Send',
  stop: 'Stop',
  regenerate: 'Regenerate',
  edit: 'Edit',
  saveAndSend: 'Save & send',
  cancel: 'Cancel',
  copy: 'Copy',
  copied: 'Copied',
  run: '▶ Run',
  runStop: '■ Stop',
  runLoading: 'Loading Python…',
  runRunning: 'Running…',
  runTimedOut: 'Time limit ({s} s) reached: stopped',
  runStopped: 'Stopped',
  runNoOutput: '(no output)',
  runExplain: 'Explain this error',
  runMissing: 'Running Python needs Pyodide: run npm ci in frontend/ (or ./setup.sh --test), then restart XiaoQ',
  runExplainPrompt: 'Running this {lang} code gave an error. Please explain why and how to fix it:\n\n```{lang}\n{code}\n```\n\nThe error:\n\n```\n{error}\n```',
  offline: 'The XiaoQ server cannot be reached',
  jumpToLatest: 'Jump to latest',
  emptyTitle: 'Hi, I am XiaoQ',
  emptySubtitle: 'A private assistant running on your own machine. Try one of these:',
  catFaq: 'Company FAQ',
  catCode: 'Programming help',
  catWriting: 'Writing',
  ttft: 'TTFT {ms} ms',
  tps: '{tps} tok/s',
  trimmed: 'Earlier messages were summarized',
  incomplete: '(incomplete answer)',
  repetition: 'stopped: the answer was repeating itself',
  lengthCut: 'the answer reached its length limit',
  continueReply: 'Continue',
  busy: 'Server busy, retrying in {n} s',
  down: 'Cannot reach the server. Is it running?',
  loading: 'Loading the model, please wait…',
  retry: 'Retry',
  errorPrefix: 'Error: ',
  apiKeyTitle: 'API key required',
  apiKeyHint: 'This server needs an API key. It is kept in this browser only.',
  apiKeyWrong: 'Wrong key, please try again',
  apiKeySave: 'Save',
  loginTitle: 'Log in to XiaoQ',
  username: 'Username',
  password: 'Password',
  login: 'Log in',
  logout: 'Log out',
  loginWrong: 'Wrong username or password',
  loginWait: 'Too many attempts; try again in {n} s',
  admin: 'Users',
  addUser: 'Add user',
  makeAdmin: 'Administrator',
  groups: 'Groups (comma-separated)',
  close: 'Close',
  themeAuto: 'Theme: system',
  themeLight: 'Theme: light',
  themeDark: 'Theme: dark',
  language: '中文',
  menu: 'Menu',
  confirmDelete: 'Delete this chat?',
  thinking: 'Thinking…',
  summarizing: 'Summarizing the earlier conversation…',
  you: 'You',
  assistant: 'XiaoQ',
  contextTrimmedHint: 'Older messages were condensed into a summary to fit the context',
  mic: 'Hold to talk, or click to start and click again to stop',
  handsFree: 'Hands-free: sends when you stop speaking',
  speakerOn: 'Read answers aloud: on',
  speakerOff: 'Read answers aloud: off',
  review: 'Review the transcript before sending',
  listening: 'Listening…',
  transcribing: 'Transcribing…',
  speaking: 'Speaking…',
  micDenied: 'Microphone access was denied: allow the microphone in the browser’s site settings.',
  micMissing: 'No microphone was found: connect one and try again.',
  micInsecure: 'Browsers allow the microphone only over HTTPS or on localhost (see --tls-cert in the README).',
  micError: 'Cannot use the microphone: {msg}',
  noSpeech: 'No speech was heard, please try again.',
  transcribeError: 'Speech recognition failed: {msg}',
  speechError: 'Reading aloud failed: {msg}',
}

export type Locale = 'zh' | 'en'
const dicts: Record<Locale, Record<MessageKey, string>> = { zh, en }

/** Suggested first questions for an empty chat, per locale and category. */
export const starters: Record<Locale, { cat: MessageKey; questions: string[] }[]> = {
  zh: [
    { cat: 'catFaq', questions: ['公司的年假制度是怎样的？', '怎么申请报销差旅费用？'] },
    { cat: 'catCode', questions: ['用 Python 写一个冒泡排序', '解释一下 JavaScript 的闭包'] },
    { cat: 'catWriting', questions: ['帮我写一封请假邮件', '把这段话改得更正式一些：明天开会别迟到'] },
  ],
  en: [
    { cat: 'catFaq', questions: ['How does our annual leave policy work?', 'How do I file a travel expense claim?'] },
    { cat: 'catCode', questions: ['Write a bubble sort in Python', 'Explain closures in JavaScript'] },
    { cat: 'catWriting', questions: ['Draft an email asking for a day off', 'Make this more formal: don’t be late tomorrow'] },
  ],
}

const STORAGE_KEY = 'xiaoq.locale'

function initialLocale(): Locale {
  try {
    const saved = localStorage.getItem(STORAGE_KEY)
    if (saved === 'zh' || saved === 'en') return saved
  } catch {
    /* storage blocked: default */
  }
  return 'zh'
}

export const locale = ref<Locale>(initialLocale())

export function setLocale(l: Locale): void {
  locale.value = l
  try {
    localStorage.setItem(STORAGE_KEY, l)
  } catch {
    /* ignore */
  }
  if (typeof document !== 'undefined') document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en'
}

/** Translates `key` in the current locale, filling `{name}` placeholders from `params`. */
export function t(key: MessageKey, params: Record<string, string | number> = {}): string {
  const text = dicts[locale.value][key] ?? key
  return text.replace(/\{(\w+)\}/g, (_, name: string) => (name in params ? String(params[name]) : `{${name}}`))
}

export const currentStarters = computed(() => starters[locale.value])
