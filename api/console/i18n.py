"""The console's two languages. Templates write English text through `t()`;
French is the table below (a test checks that every text a template or view
passes to t() has its French). Keys with a prefix (`role:`, `status:`,
`level:`, `kind:`, `action:`, `notice:`) name a value rather than a sentence."""

from __future__ import annotations

from flask import g

LANGUAGES = ("fr", "en")
DEFAULT = "fr"


def choose(asked: str | None, accepted: str | None) -> str:
    """The page's language: the one asked (?lang= or its cookie), else the
    browser's preference among ours, else French."""
    for candidate in (asked, accepted):
        if candidate is not None and candidate in LANGUAGES:
            return candidate
    return DEFAULT


ENGLISH_VALUES = {
    "role:principal": "principal manager",
    "role:secondary": "secondary manager",
    "role:simple": "simple user",
    "role:technical": "technical user",
    "role:none": "none",
    "status:pending": "pending",
    "status:active": "active",
    "status:inactive": "inactive",
    "status:closed": "closed",
    "status:validated": "validated",
    "status:refused": "refused",
    "status:deactivated": "deactivated",
    "status:deleted": "deleted",
    "status:none": "none",
    "status:accepted": "accepted",
    "status:withdrawn": "withdrawn",
    "status:expired": "expired",
    "level:consult": "consultation",
    "level:modify": "modification",
    "kind:attachment": "Attachment request",
    "kind:subscription": "Subscription request",
    "kind:user": "User",
    "notice:activated": "Your account is active: log in with your password.",
    "notice:password_changed": "Your password is changed: log in with it.",
    "notice:logged_out": "You are logged out.",
    "notice:deactivated": "Your account is deactivated.",
    "notice:reactivated": "Your account is active again: log in.",
    "notice:request_sent": "Your request is sent to the structure's managers.",
    "notice:invitation_accepted": "Invitation accepted.",
    "notice:invitation_refused": "Invitation refused.",
    "notice:validated": "Request validated.",
    "notice:refused": "Request refused.",
    "notice:attached": "User attached.",
    "notice:invitation_sent": "Invitation sent: the person is attached when they accept it.",
    "notice:removed": "User removed from the structure.",
    "notice:account_created": "Account created and attached; the activation mail is sent.",
    "notice:principal_designated": "The new principal manager is designated.",
    "notice:identifier_changed": "The structure now has its new identifier.",
    # history actions: one label for every action of HISTORY_ACTIONS (a test checks)
    "action:account.created": "Account created",
    "action:account.deactivated": "Account deactivated",
    "action:account.reactivated": "Account reactivated",
    "action:account.closed": "Account closed",
    "action:user.updated": "User details changed",
    "action:operator.appointed": "Operator appointed",
    "action:security_reviewer.appointed": "Security reviewer appointed",
    "action:client.created": "Client application created",
    "action:client.revoked": "Client application revoked",
    "action:structure.created": "Structure created",
    "action:structure.registered": "Structure registered",
    "action:structure.updated": "Structure changed",
    "action:structure.identifier_changed": "Identifier changed",
    "action:structure.created_from_identifier_change": "Structure created by an identifier change",
    "action:service.created": "Service created",
    "action:service.updated": "Service changed",
    "action:spaces.updated": "Opened spaces changed",
    "action:attachment_request.created": "Attachment requested",
    "action:attachment_request.validated": "Attachment request validated",
    "action:attachment_request.refused": "Attachment request refused",
    "action:attachment.created": "User attached",
    "action:attachment.deleted": "User removed",
    "action:attachment.left": "User left the structure",
    "action:attachment.role_changed": "Role changed",
    "action:attachment.services_added": "Services added",
    "action:attachment.services_removed": "Services removed",
    "action:invitation.created": "Invitation sent",
    "action:invitation.accepted": "Invitation accepted",
    "action:invitation.refused": "Invitation refused",
    "action:invitation.withdrawn": "Invitation withdrawn",
    "action:invitation.expired": "Invitation expired",
    "action:principal.designated": "Principal manager designated",
    "action:principal.appointed": "Principal manager appointed",
    "action:subscription_request.created": "Subscription requested",
    "action:subscription_request.validated": "Subscription request validated",
    "action:subscription_request.self_validated": "Own subscription request validated",
    "action:subscription_request.refused": "Subscription request refused",
    "action:subscriptions.granted": "Subscriptions granted",
    "action:subscription.revoked": "Subscription revoked",
    "action:technical_user.created": "Technical user created",
    "action:technical_user.secret_reset": "Technical user's secret reset",
}

FRENCH = {
    # values
    "action:account.created": "Compte créé",
    "action:account.deactivated": "Compte désactivé",
    "action:account.reactivated": "Compte réactivé",
    "action:account.closed": "Compte clos",
    "action:user.updated": "Coordonnées de l'utilisateur modifiées",
    "action:operator.appointed": "Opérateur nommé",
    "action:security_reviewer.appointed": "Responsable de la revue de sécurité nommé",
    "action:client.created": "Application cliente créée",
    "action:client.revoked": "Application cliente révoquée",
    "action:structure.created": "Structure créée",
    "action:structure.registered": "Structure enregistrée",
    "action:structure.updated": "Structure modifiée",
    "action:structure.identifier_changed": "Identifiant modifié",
    "action:structure.created_from_identifier_change": (
        "Structure créée par changement d'identifiant"
    ),
    "action:service.created": "Service créé",
    "action:service.updated": "Service modifié",
    "action:spaces.updated": "Espaces ouverts modifiés",
    "action:attachment_request.created": "Rattachement demandé",
    "action:attachment_request.validated": "Demande de rattachement validée",
    "action:attachment_request.refused": "Demande de rattachement refusée",
    "action:attachment.created": "Utilisateur rattaché",
    "action:attachment.deleted": "Utilisateur retiré",
    "action:attachment.left": "L'utilisateur a quitté la structure",
    "action:attachment.role_changed": "Rôle modifié",
    "action:attachment.services_added": "Services ajoutés",
    "action:attachment.services_removed": "Services retirés",
    "action:invitation.created": "Invitation envoyée",
    "action:invitation.accepted": "Invitation acceptée",
    "action:invitation.refused": "Invitation refusée",
    "action:invitation.withdrawn": "Invitation retirée",
    "action:invitation.expired": "Invitation expirée",
    "action:principal.designated": "Gestionnaire principal désigné",
    "action:principal.appointed": "Gestionnaire principal nommé",
    "action:subscription_request.created": "Souscription demandée",
    "action:subscription_request.validated": "Demande de souscription validée",
    "action:subscription_request.self_validated": "Demande de souscription validée par son auteur",
    "action:subscription_request.refused": "Demande de souscription refusée",
    "action:subscriptions.granted": "Souscriptions accordées",
    "action:subscription.revoked": "Souscription retirée",
    "action:technical_user.created": "Utilisateur technique créé",
    "action:technical_user.secret_reset": "Secret de l'utilisateur technique renouvelé",
    "role:principal": "gestionnaire principal",
    "role:secondary": "gestionnaire secondaire",
    "role:simple": "utilisateur simple",
    "role:technical": "utilisateur technique",
    "role:none": "aucun",
    "status:pending": "en cours",
    "status:active": "actif",
    "status:inactive": "inactif",
    "status:closed": "clos",
    "status:validated": "validé",
    "status:refused": "refusé",
    "status:deactivated": "désactivé",
    "status:deleted": "supprimé",
    "status:none": "aucun",
    "status:accepted": "acceptée",
    "status:withdrawn": "retirée",
    "status:expired": "expirée",
    "level:consult": "consultation",
    "level:modify": "modification",
    "kind:attachment": "Demande de rattachement",
    "kind:subscription": "Demande d'abonnement",
    "kind:user": "Utilisateur",
    "notice:activated": "Votre compte est actif : connectez-vous avec votre mot de passe.",
    "notice:password_changed": "Votre mot de passe est changé : connectez-vous avec.",
    "notice:logged_out": "Vous êtes déconnecté.",
    "notice:deactivated": "Votre compte est désactivé.",
    "notice:reactivated": "Votre compte est de nouveau actif : connectez-vous.",
    "notice:request_sent": "Votre demande est envoyée aux gestionnaires de la structure.",
    "notice:invitation_accepted": "Invitation acceptée.",
    "notice:invitation_refused": "Invitation refusée.",
    "notice:validated": "Demande validée.",
    "notice:refused": "Demande refusée.",
    "notice:attached": "Utilisateur rattaché.",
    (
        "notice:invitation_sent"
    ): "Invitation envoyée : la personne sera rattachée quand elle l'acceptera.",
    "notice:removed": "Utilisateur retiré de la structure.",
    "notice:account_created": "Compte créé et rattaché ; le courriel d'activation est envoyé.",
    "notice:principal_designated": "Le nouveau gestionnaire principal est désigné.",
    "notice:identifier_changed": "La structure porte maintenant son nouvel identifiant.",
    # sentences and labels
    "Manager console": "Activités du gestionnaire",
    "My structures": "Mes structures",
    "My page": "Mon compte",
    "Review report": "Rapport de revue",
    "Explain a decision": "Expliquer une décision",
    "Log out": "Se déconnecter",
    "Log in": "Se connecter",
    "Error": "Erreur",
    "Not found.": "Introuvable.",
    (
        "This form expired or did not come from this site. Reload the page and try again."
    ): "Ce formulaire a expiré ou ne vient pas de ce site. Rechargez la page et recommencez.",
    "The two passwords differ.": "Les deux mots de passe diffèrent.",
    "Login email": "Adresse de connexion",
    "Password": "Mot de passe",
    "Password again": "Mot de passe (confirmation)",
    "Forgot your password?": "Mot de passe oublié ?",
    "Reactivate my account": "Réactiver mon compte",
    "Reactivate": "Réactiver",
    "Within 60 days of its deactivation.": "Dans les 60 jours suivant sa désactivation.",
    "Choose your password": "Choisissez votre mot de passe",
    "Activate your account": "Activez votre compte",
    "Choose a new password": "Choisissez un nouveau mot de passe",
    (
        "At least 12 characters; a long passphrase is best."
    ): "Au moins 12 caractères ; une longue phrase de passe est préférable.",
    "Save the password": "Enregistrer le mot de passe",
    (
        "If an active account uses this address, a link to choose a new password was mailed to "
        "it. It works once, for 60 minutes."
    ): "Si un compte actif utilise cette adresse, un lien pour choisir un nouveau mot de passe "
    "lui a été envoyé. Il fonctionne une fois, pendant 60 minutes.",
    "Send me a link": "M'envoyer un lien",
    "Designation": "Raison sociale",
    "Identifier": "Identifiant",
    "Identifier type": "Type d'identifiant",
    "Status": "Statut",
    "My role": "Mon rôle",
    (
        "You are attached to no structure yet: ask for an attachment on your page."
    ): "Vous n'êtes rattaché à aucune structure : demandez un rattachement depuis votre compte.",
    "Pending requests": "Demandes en attente",
    "Users": "Utilisateurs",
    "Technical users": "Utilisateurs techniques",
    "Designate a new principal manager": "Désigner un nouveau gestionnaire principal",
    "Change of identifier": "Changement d'identifiant",
    "History": "Historique",
    "Attachment requests": "Demandes de rattachement",
    "Subscription requests": "Demandes d'abonnement",
    "Requester": "Demandeur",
    "Scope": "Périmètre",
    "Comment": "Commentaire",
    "Asked on": "Demandé le",
    "Whole structure": "Toute la structure",
    "Some services": "Certains services",
    "Open": "Ouvrir",
    "No pending request.": "Aucune demande en attente.",
    "Spaces": "Espaces",
    "Checked requests": "Demandes cochées",
    "Validate": "Valider",
    "Refuse": "Refuser",
    "Reason (to refuse)": "Motif (pour refuser)",
    "Apply": "Appliquer",
    "Attachment request": "Demande de rattachement",
    "Subscription request": "Demande d'abonnement",
    "Role": "Rôle",
    "Services": "Services",
    "Start date of validity": "Date de début de validité",
    "Reason": "Motif",
    "Space": "Espace",
    "Service": "Service",
    "Level": "Niveau",
    "All services": "Tous les services",
    "Result": "Résultat",
    "Item": "Élément",
    "Done": "Fait",
    "Back to the structure": "Retour à la structure",
    "Last name": "Nom",
    "First name": "Prénom",
    "Search": "Rechercher",
    "Ask for an attachment first: a subscription is asked for a structure one belongs to.": (
        "Demandez d'abord un rattachement : une souscription se demande pour une structure "
        "dont on fait partie."
    ),
    (
        "A principal manager names a successor for each structure they lead. The account can "
        "be reactivated within 60 days."
    ): "Un gestionnaire principal désigne un successeur pour chaque structure qu'il gère. "
    "Le compte peut être réactivé dans les 60 jours.",
    "Successor for": "Successeur pour",
    "You can reactivate your account until": "Vous pouvez réactiver votre compte jusqu'au",
    "Name": "Nom",
    "user(s)": "utilisateur(s)",
    "Export the checked users (CSV)": "Exporter les utilisateurs cochés (CSV)",
    (
        "Send the activation mail to the checked users"
    ): "Envoyer le courriel d'activation aux utilisateurs cochés",
    "Remove": "Retirer",
    "Attach a user directly": "Rattacher directement un utilisateur",
    "Attach": "Rattacher",
    (
        "An account already active receives an invitation: it is attached when the person accepts "
        "it."
    ): "Un compte déjà actif reçoit une invitation : il est rattaché quand la personne l'accepte.",
    "Create an account": "Créer un compte",
    "Create and attach": "Créer et rattacher",
    "Label": "Libellé",
    "Login": "Identifiant de connexion",
    "Secret expires": "Expiration du secret",
    "expired": "expiré",
    "I will warn the structure's system": "Je préviendrai le système de la structure",
    "Reset the secret": "Réinitialiser le secret",
    "Create a technical user": "Créer un utilisateur technique",
    "Create": "Créer",
    "Connection information": "Informations de connexion",
    (
        "Copy the secret now: it is shown only once and cannot be read again."
    ): "Copiez le secret maintenant : il n'est affiché qu'une fois et ne peut plus être relu.",
    "Secret": "Secret",
    "You stay attached as a simple user.": "Vous restez rattaché comme utilisateur simple.",
    "Login email of the new principal": "Adresse de connexion du nouveau gestionnaire principal",
    "Designate": "Désigner",
    (
        "The structure is duplicated under the new identifier with its services, settings, "
        "attachments and subscriptions; this one becomes inactive."
    ): "La structure est dupliquée sous le nouvel identifiant avec ses services, paramètres, "
    "rattachements et abonnements ; celle-ci devient inactive.",
    "New identifier": "Nouvel identifiant",
    "I confirm the change": "Je confirme le changement",
    "Change the identifier": "Changer l'identifiant",
    "Action": "Action",
    "Filter": "Filtrer",
    "When": "Quand",
    "Who": "Qui",
    "What": "Quoi",
    "On whom": "Sur qui",
    "entries": "entrées",
    "Invitations": "Invitations",
    "Structure": "Structure",
    "Accept": "Accepter",
    "No invitation.": "Aucune invitation.",
    "Ask for an attachment": "Demander un rattachement",
    "Ask": "Demander",
    "Ask for a subscription": "Demander un abonnement",
    "My requests": "Mes demandes",
    "Deactivate my account": "Désactiver mon compte",
    "Deactivate": "Désactiver",
    "Generated at": "Généré le",
    "Finding": "Constat",
    "Count": "Nombre",
    "Severity": "Gravité",
    "User": "Utilisateur",
    "Detail": "Détail",
    "User id": "Identifiant de l'utilisateur",
    "Structure id": "Identifiant de la structure",
    "Space (empty: a management action)": "Espace (vide : une action de gestion)",
    "Service code": "Code du service",
    "Explain": "Expliquer",
    "Create my account": "Créer mon compte",
    (
        "Your account is created: open the link mailed to you within 60 minutes to choose your "
        "password."
    ): "Votre compte est créé : ouvrez le lien envoyé par courriel dans les 60 minutes pour "
    "choisir votre mot de passe.",
}


def t(text: str) -> str:
    """`text` in the page's language (English keys of values have their English
    wording in ENGLISH_VALUES; every declared history action has its label in
    both, a test checks; an undeclared `action:` key falls back to its code)."""
    lang = g.get("lang", DEFAULT)
    if lang == "fr" and text in FRENCH:
        return FRENCH[text]
    if text.startswith("action:"):
        return text.removeprefix("action:")
    return ENGLISH_VALUES.get(text, text)
