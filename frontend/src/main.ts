import { createApp } from 'vue'
import App from './App.vue'
import { applyTheme } from './theme'
import { followVisualViewport, registerServiceWorker } from './pwa/pwa'
import './styles.css'

applyTheme()
followVisualViewport()
createApp(App).mount('#app')
registerServiceWorker()
