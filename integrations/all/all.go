// Package all links every integration into the binary: importing it runs
// each one's init(), which registers it.
package all

import (
	_ "courier/integrations/bitbucket" // bitbucket
	_ "courier/integrations/git"       // git
	_ "courier/integrations/gitea"     // gitea
	_ "courier/integrations/github"    // github
	_ "courier/integrations/gitlab"    // gitlab
	_ "courier/integrations/jira"      // jira
	_ "courier/integrations/synthetic" // synthetic
)
